"""radserve.inference (see DESIGN.md)."""
