"""DICOM SR measurement reports (TID 1500): writing and reading measurements."""

from radserve.dicom_io.sr.writing import (
    CodingSchemeIdentification,
    NumericMeasurement,
    read_sr_measurements,
    sr_uids,
    write_sr,
)

__all__ = [
    "CodingSchemeIdentification",
    "NumericMeasurement",
    "read_sr_measurements",
    "sr_uids",
    "write_sr",
]
