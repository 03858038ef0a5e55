"""Deterministic UIDs: the same inputs and model version always give the same result UIDs,
so a rerun never duplicates results in a PACS."""

from __future__ import annotations

import hashlib


def derive_uid(*parts: str) -> str:
    """A UID in the 2.25 (UUID-derived) root, derived from the given strings.

    The UID is stable across runs and machines: 128 bits of the SHA-256 of the inputs, as
    PS3.5 B.2 allows for the 2.25 root.
    """
    if not parts:
        raise ValueError("derive_uid needs at least one input")
    digest = hashlib.sha256("\x1f".join(("radserve", *parts)).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
