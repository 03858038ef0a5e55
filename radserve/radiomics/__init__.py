"""radserve.radiomics (see DESIGN.md)."""
