"""DICOM input and output: instances, volumes, masks, SEG / SR / SC writers, de-identification."""
