"""The HTTP routes: DICOMweb (STOW-RS, QIDO-RS, WADO-RS), jobs, models, health, metrics."""
