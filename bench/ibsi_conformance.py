"""Write docs/ibsi_conformance.md: the IBSI chapter 1 digital phantom through radserve.

Run: ``.venv/bin/python bench/ibsi_conformance.py [--phantom DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from radserve.radiomics import write_conformance

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--phantom", type=Path, default=ROOT.parent / "shared/data/ibsi1_digital_phantom"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs/ibsi_conformance.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = write_conformance(args.phantom, args.out)
    passed = sum(row.status == "pass" for row in rows)
    logging.info("%d of %d features pass; wrote %s", passed, len(rows), args.out)


if __name__ == "__main__":
    main()
