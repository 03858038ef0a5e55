"""Reading DICOM instances from files, folders, zip archives and bytes."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError as PydicomInvalidDicomError

from radserve.dicom_io.errors import InvalidDicomError

logger = logging.getLogger(__name__)


def read_instance(source: str | Path | bytes, *, stop_before_pixels: bool = False) -> Dataset:
    """Read one DICOM instance from a path or from bytes.

    Files without the 128-byte preamble or without file meta information are accepted.

    Raises:
        InvalidDicomError: The input is not DICOM or is truncated.
    """
    name = "<bytes>" if isinstance(source, bytes) else Path(source).name
    fp = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        ds = pydicom.dcmread(fp, force=True, stop_before_pixels=stop_before_pixels)
    except (PydicomInvalidDicomError, EOFError, OSError, ValueError, KeyError) as exc:
        raise InvalidDicomError(f"{name}: not a readable DICOM instance ({exc})") from exc
    if "SOPInstanceUID" not in ds:
        raise InvalidDicomError(f"{name}: not a DICOM instance (no SOP Instance UID)")
    return ds


def iter_instances(
    paths: Iterable[str | Path], *, stop_before_pixels: bool = False
) -> Iterator[Dataset]:
    """Yield instances from files, folders (recursively) and zip archives.

    Files that are not DICOM are skipped with a log line; nothing else is skipped.
    """
    for path in map(Path, paths):
        if path.is_dir():
            yield from iter_instances(
                sorted(p for p in path.rglob("*") if p.is_file()),
                stop_before_pixels=stop_before_pixels,
            )
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in sorted(archive.namelist()):
                    if member.endswith("/"):
                        continue
                    try:
                        yield read_instance(
                            archive.read(member), stop_before_pixels=stop_before_pixels
                        )
                    except InvalidDicomError:
                        logger.info("skipping non-DICOM archive member %s", member)
        else:
            try:
                yield read_instance(path, stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                logger.info("skipping non-DICOM file %s", path.name)


def decode_pixel_arrays(instances: Sequence[Dataset]) -> list[npt.NDArray[np.generic]]:
    """Decode the stored pixel values of each instance (no rescale applied)."""
    return [np.asarray(ds.pixel_array) for ds in instances]
