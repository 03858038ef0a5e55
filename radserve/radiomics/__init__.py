"""radserve.radiomics: PyRadiomics features per segment (see DESIGN.md).

* :mod:`~radserve.radiomics.params`: parameter sets (PyRadiomics YAML in configs/radiomics).
* :mod:`~radserve.radiomics.extract`: :func:`extract_features` on a Volume and a LabelMap.
* :mod:`~radserve.radiomics.inputs`: images and masks from DICOM, SEG, RTSTRUCT, NIfTI, NRRD.
* :mod:`~radserve.radiomics.codes`: IBSI codes and UCUM units of each feature.
* :mod:`~radserve.radiomics.sr_features`: features as TID 1500 SR measurements.
* :mod:`~radserve.radiomics.tables`, :mod:`~radserve.radiomics.batch`,
  :mod:`~radserve.cli.extract`: feature tables, batches and the CLI's work.
* :mod:`~radserve.radiomics.ibsi`: conformance with the IBSI digital phantom.
"""
