"""De-identification: the PS3.15 Basic Application Level Confidentiality Profile."""

from radserve.dicom_io.deid.dataset import (
    DeidOptions,
    deidentify,
    resolve_salt,
)
from radserve.dicom_io.deid.files import (
    DeidReport,
    SkippedInput,
    deidentify_files,
)
from radserve.dicom_io.deid.profile import (
    PATTERN_ROWS,
    PRIVATE_ROW,
    PROFILE_ROWS,
    ROWS_BY_TAG,
    ProfileOption,
    ProfileRow,
)

__all__ = [
    "PATTERN_ROWS",
    "PRIVATE_ROW",
    "PROFILE_ROWS",
    "ROWS_BY_TAG",
    "DeidOptions",
    "DeidReport",
    "ProfileOption",
    "ProfileRow",
    "SkippedInput",
    "deidentify",
    "deidentify_files",
    "resolve_salt",
]
