"""Process state from ``/proc`` (Linux), for tests of worker-process lifetimes."""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or ``None`` if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def child_processes(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                children.append(int(entry))
    return children


def _status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    raise ValueError(f"no {field} for process {pid}")


def peak_memory_mb(pid: int) -> float:
    """The peak resident memory of ``pid`` so far (``VmHWM``), in MB."""
    return _status_mb(pid, "VmHWM")


def resident_memory_mb(pid: int) -> float:
    """The resident memory of ``pid`` now (``VmRSS``), in MB."""
    return _status_mb(pid, "VmRSS")
