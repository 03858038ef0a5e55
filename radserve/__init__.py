"""radserve: a DICOMweb AI inference server for radiology."""

__version__ = "0.1.0"
