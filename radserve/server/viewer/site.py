"""The installed OHIF viewer as radserve serves it under ``/viewer``.

The installer has moved the viewer under :data:`VIEWER_PATH`; :class:`ViewerSite` serves
its files, with ``app-config.js`` replaced by radserve's own configuration
(:func:`app_config_js`), whose one data source is radserve's DICOMweb on the same origin,
with per-frame retrieval of multi-frame objects (``loadMultiframeAsPart10`` off), so DICOM
SEG frames come through ``/frames`` already re-packed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from radserve.server.viewer.install import VIEWER_PATH, installed_version

APP_CONFIG = "app-config.js"


@dataclass(frozen=True)
class ViewerOptions:
    """What radserve's viewer configuration says besides the data source.

    Attributes:
        dicomweb_path: The DICOMweb root on this origin.
        thumbnail_rendering: How OHIF gets thumbnails: ``thumbnail`` (the server's
            ``/thumbnail`` resources) or ``wadors`` (drawn in the browser from frames).
        load_multiframe_as_part10: Have OHIF fetch multi-frame objects whole (as Part 10
            files) instead of frame by frame (OHIF's own default is on).
    """

    dicomweb_path: str = "/dicomweb"
    thumbnail_rendering: str = "thumbnail"
    load_multiframe_as_part10: bool = False


def app_config_js(options: ViewerOptions = ViewerOptions()) -> str:
    """OHIF's ``window.config`` for radserve's DICOMweb (see the module docstring)."""
    data_source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "radserve",
        "configuration": {
            "friendlyName": "radserve",
            "name": "radserve",
            "qidoSupportsIncludeField": True,
            "imageRendering": "wadors",
            "thumbnailRendering": options.thumbnail_rendering,
            "thumbnailRequestStrategy": "fetch",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "supportsReject": False,
            "staticWado": False,
            "singlepart": False,
            "bulkDataURI": {"enabled": True},
            "omitQuotationForMultipartRequest": False,
            "loadMultiframeAsPart10": options.load_multiframe_as_part10,
        },
    }
    config = {
        "name": "radserve",
        "routerBasename": VIEWER_PATH,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showLoadingIndicator": True,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": "radserve",
        "dataSources": [data_source],
    }
    # The DICOMweb roots are this page's origin plus the path, resolved in the browser so
    # that the same files serve every host name the server is reached by.
    path = json.dumps(options.dicomweb_path)
    return (
        "// radserve: OHIF configuration for this server's DICOMweb (generated).\n"
        f"(function () {{\n  const root = window.location.origin + {path};\n"
        f"  const config = {json.dumps(config, indent=2)};\n"
        "  const source = config.dataSources[0].configuration;\n"
        "  source.qidoRoot = root;\n  source.wadoRoot = root;\n  source.wadoUriRoot = root;\n"
        "  window.config = config;\n})();\n"
    )


class ViewerSite:
    """The files of an installed viewer, served under :data:`VIEWER_PATH`.

    Args:
        viewer_dir: The folder :func:`~radserve.server.viewer.install.install_viewer` wrote.
        options: The generated configuration's options.
    """

    def __init__(self, viewer_dir: Path, options: ViewerOptions = ViewerOptions()) -> None:
        self.viewer_dir = viewer_dir.resolve()
        self.options = options
        self.version = installed_version(self.viewer_dir)

    @cached_property
    def index_html(self) -> bytes:
        """The app's page, ``index.html``."""
        return (self.viewer_dir / "index.html").read_bytes()

    @cached_property
    def app_config(self) -> bytes:
        """The generated ``app-config.js``."""
        return app_config_js(self.options).encode("utf-8")

    def file(self, relative: str) -> Path | None:
        """The viewer file at ``relative`` (a URL path below the prefix), if there is one.

        Paths that leave the viewer folder, hidden files and folders give ``None``.
        """
        parts = [p for p in relative.split("/") if p]
        if not parts or any(p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        candidate = self.viewer_dir.joinpath(*parts).resolve()
        if not candidate.is_relative_to(self.viewer_dir) or not candidate.is_file():
            return None
        return candidate
