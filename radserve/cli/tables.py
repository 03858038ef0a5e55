"""Tables the commands print: the measurements of each segment found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from radserve.dicom_io import LabelMap, SegmentMeasurements


def print_measurements(
    console: Console, labelmap: LabelMap, measurements: Sequence[SegmentMeasurements]
) -> None:
    """Print one row per segment found, or that no segment was found."""
    from rich.table import Table

    if not measurements:
        searched = ", ".join(s.name for s in labelmap.segments)
        console.print(f"No findings: no segment found ({searched}).")
        return
    names = {s.label: s.name for s in labelmap.segments}
    table = Table(title="Segments")
    for column in ("segment", "voxels", "volume (ml)", "mean", "min", "max", "std"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for m in measurements:
        table.add_row(
            names[m.label],
            str(m.voxel_count),
            f"{m.volume_mm3 / 1000:.2f}",
            f"{m.mean:.1f}",
            f"{m.minimum:.0f}",
            f"{m.maximum:.0f}",
            f"{m.std:.1f}",
        )
    console.print(table)
