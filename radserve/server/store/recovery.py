"""Crash recovery when the instance store opens.

``tmp`` is emptied, and each file of the ``pending_files`` journal that exists is indexed: it
was fully written, fsynced and validated before it was renamed into place, and its sender was
never answered (see :mod:`radserve.server.store.instances`). The journal is then cleared.
"""

from __future__ import annotations

import logging
from pathlib import Path

from radserve.dicom_io import DicomIOError, read_instance
from radserve.server.store.files import file_values, sha256_of
from radserve.server.store.index import (
    IndexDatabase,
    IndexRows,
    index_rows,
    insert_rows,
    transaction,
)

logger = logging.getLogger("radserve.server.store.instances")  # the store's own log


def recover(
    index: IndexDatabase, data_dir: Path, tmp_dir: Path, *, max_instance_bytes: int
) -> None:
    """Empty ``tmp_dir`` and index the files of an interrupted commit."""
    for leftover in tmp_dir.iterdir():
        if leftover.is_file():
            leftover.unlink()
    with index.writing() as db:
        paths = [row[0] for row in db.execute("SELECT path FROM pending_files")]
        indexed = 0
        for relative in paths:
            path = data_dir / relative
            if path.is_file():
                try:
                    rows = rows_of_file(path, data_dir, max_instance_bytes=max_instance_bytes)
                except DicomIOError:
                    path.unlink()  # cannot happen for a validated file; never acknowledged
                    continue
                with transaction(db):
                    insert_rows(db, rows)
                indexed += 1
        if paths:
            with transaction(db):
                db.execute("DELETE FROM pending_files")
            logger.warning(
                "store recovery: %d of %d files of an interrupted commit indexed",
                indexed,
                len(paths),
            )


def rows_of_file(path: Path, data_dir: Path, *, max_instance_bytes: int) -> IndexRows:
    """The index rows of a stored file, read back from disk."""
    ds = read_instance(path, stop_before_pixels=True, max_bytes=max_instance_bytes)
    values = file_values(ds, path, path.stat().st_size, sha256_of(path), data_dir=data_dir)
    return index_rows(ds, file_values=values)
