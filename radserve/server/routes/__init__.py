"""The HTTP API: DICOMweb (STOW-RS, QIDO-RS, WADO-RS), authentication and health."""
