"""DICOM SR measurement reports (TID 1500): writing and reading measurements."""

from radserve.dicom_io.sr.content import CodingSchemeIdentification, NumericMeasurement
from radserve.dicom_io.sr.planar import maximum_3d_diameter_mm
from radserve.dicom_io.sr.reading import read_sr_measurements
from radserve.dicom_io.sr.writing import SrOptions, sr_uids, write_sr

__all__ = [
    "CodingSchemeIdentification",
    "NumericMeasurement",
    "SrOptions",
    "maximum_3d_diameter_mm",
    "read_sr_measurements",
    "sr_uids",
    "write_sr",
]
