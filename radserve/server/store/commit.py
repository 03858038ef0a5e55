"""The commit of a batch under the index's write lock: classification and publication.

:func:`classify` decides what each validated instance of a batch becomes (stored, an identical
re-send, a duplicate, a conflict or over a limit); :func:`publish` journals the accepted
files, renames them into place, fsyncs their folders and indexes them (the crash rule of
:mod:`radserve.server.store.instances`).
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from radserve.dicom_io import DicomIOError
from radserve.server.store.batch import FailedInstance, PendingInstance, StoredInstance
from radserve.server.store.errors import (
    DuplicateInstanceError,
    InstanceRejectedError,
    StoreFullError,
)
from radserve.server.store.files import fsync_folder, make_parents
from radserve.server.store.index import insert_rows, transaction


def classify(
    db: sqlite3.Connection,
    items: list[PendingInstance | FailedInstance],
    results: dict[int, StoredInstance | FailedInstance],
    *,
    data_dir: Path,
    overwrite: bool,
    max_instances_per_study: int | None,
) -> tuple[list[tuple[int, PendingInstance]], list[Path]]:
    """Decide, under the write lock, what each pending instance becomes."""
    accepted: list[tuple[int, PendingInstance]] = []
    replaced: list[Path] = []
    batch_sops: dict[str, PendingInstance] = {}
    batch_series: dict[str, str] = {}
    batch_counts: dict[str, int] = {}
    for k, item in enumerate(items):
        if not isinstance(item, PendingInstance):
            continue
        inst = item.instance
        failure: DicomIOError | None = None
        earlier = batch_sops.get(inst.sop_instance_uid)
        row = db.execute(
            "SELECT sha256, size_bytes, path, study_instance_uid, series_instance_uid "
            "FROM instances WHERE sop_instance_uid = ?",
            (inst.sop_instance_uid,),
        ).fetchone()
        series_study = batch_series.get(inst.series_instance_uid) or _scalar(
            db,
            "SELECT study_instance_uid FROM series WHERE series_instance_uid = ?",
            inst.series_instance_uid,
        )
        if earlier is not None or row is not None:
            same = (
                earlier.instance.sha256 == inst.sha256
                if earlier is not None
                else (row[0], row[1]) == (inst.sha256, inst.size_bytes)
            )
            if same:
                existing = earlier.instance if earlier is not None else None
                path = existing.path if existing else data_dir / row[2]
                results[k] = _replace(inst, path=path, created=False)
                continue
            if not overwrite or earlier is not None:
                failure = DuplicateInstanceError(
                    "an instance with this SOP Instance UID is stored already, with "
                    "different content"
                )
        if failure is None and series_study and series_study != inst.study_instance_uid:
            failure = InstanceRejectedError(
                "the instance's series is stored already under another study"
            )
        if failure is None and max_instances_per_study is not None and row is None:
            count = batch_counts.get(inst.study_instance_uid)
            if count is None:
                count = int(
                    _scalar(
                        db,
                        "SELECT COUNT(*) FROM instances WHERE study_instance_uid = ?",
                        inst.study_instance_uid,
                    )
                    or 0
                )
            if count >= max_instances_per_study:
                failure = StoreFullError(
                    f"the study holds the maximum of {max_instances_per_study} instances"
                )
            batch_counts[inst.study_instance_uid] = count + 1
        if failure is not None:
            results[k] = FailedInstance(inst.sop_class_uid, inst.sop_instance_uid, failure)
            continue
        if row is not None and data_dir / row[2] != inst.path:
            replaced.append(data_dir / row[2])
        accepted.append((k, item))
        results[k] = inst
        batch_sops[inst.sop_instance_uid] = item
        batch_series[inst.series_instance_uid] = inst.study_instance_uid
    return accepted, replaced


def publish(
    db: sqlite3.Connection,
    accepted: list[PendingInstance],
    replaced: list[Path],
    *,
    data_dir: Path,
    sync_pool: Executor,
) -> None:
    """Journal, rename into place, fsync folders, index; ``db`` is the held writer."""
    if not accepted:
        return
    relative = [str(item.instance.path.relative_to(data_dir)) for item in accepted]
    with transaction(db):
        db.executemany(
            "INSERT OR IGNORE INTO pending_files (path) VALUES (?)", [(p,) for p in relative]
        )
    folders: set[Path] = set()
    for item in accepted:
        target = item.instance.path
        folders.update(make_parents(target.parent, data_dir))
        os.replace(item.staged.path, target)
        folders.add(target.parent)
    list(sync_pool.map(fsync_folder, sorted(folders)))
    with transaction(db):
        for item in accepted:
            insert_rows(db, item.rows)
        db.executemany("DELETE FROM pending_files WHERE path = ?", [(p,) for p in relative])
    for path in replaced:
        path.unlink(missing_ok=True)


def _replace(instance: StoredInstance, *, path: Path, created: bool) -> StoredInstance:
    return StoredInstance(
        **{**instance.__dict__, "path": path, "created": created},
    )


def _scalar(db: sqlite3.Connection, sql: str, value: str) -> Any:
    row = db.execute(sql, (value,)).fetchone()
    return row[0] if row else None
