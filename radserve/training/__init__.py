"""radserve.training (see DESIGN.md)."""
