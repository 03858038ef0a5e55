"""The OHIF web viewer: installed from npm (pinned, integrity checked), served at /viewer."""

from radserve.server.viewer.install import (
    OHIF_INTEGRITY,
    OHIF_VERSION,
    VIEWER_PATH,
    ViewerInstallError,
    install_viewer,
    installed_version,
    relocate_viewer,
)
from radserve.server.viewer.site import ViewerOptions, ViewerSite, app_config_js

__all__ = [
    "OHIF_INTEGRITY",
    "OHIF_VERSION",
    "VIEWER_PATH",
    "ViewerInstallError",
    "ViewerOptions",
    "ViewerSite",
    "app_config_js",
    "install_viewer",
    "installed_version",
    "relocate_viewer",
]
