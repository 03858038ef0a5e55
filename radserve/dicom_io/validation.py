"""The DICOM validator (dicom3tools' ``dciodvfy``) on files radserve writes, and the rule that
tells an error radserve introduced from one inherited from its source.

A derived object (SEG, SR, Secondary Capture) copies the patient, study and often series
attributes of its source; a non-conformant source (a Study ID longer than SH allows, a
missing Type 2C attribute) makes the same error in everything derived from it, verbatim.
Those lines are *inherited*: the source's own report holds the identical line. Every other
error line is *introduced* by radserve. The tests hold what radserve writes to that rule,
and the server's conformance gate applies it to every result before it is stored.

``dciodvfy`` quotes attribute values (``[SH] = <value>``), which may be patient data;
:func:`redacted` removes them, for logs and job records.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from radserve.dicom_io.errors import DicomIOError

DCIODVFY = "dciodvfy"
DEFAULT_TIMEOUT_S = 120.0
_VALUE = re.compile(r" = <[^>]*(>|$)")  # a value may run to the line's end (a newline)


class ValidatorUnavailableError(DicomIOError):
    """``dciodvfy`` is not installed, or did not run to its end."""


@dataclass(frozen=True)
class ValidatorReport:
    """What ``dciodvfy`` said about one file: its error and warning lines, verbatim."""

    errors: list[str]
    warnings: list[str]
    output: str


def find_dciodvfy() -> str | None:
    """The path of ``dciodvfy`` on ``PATH``, or ``None``."""
    return shutil.which(DCIODVFY)


def run_dciodvfy(
    path: Path, *, executable: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ValidatorReport:
    """Validate one DICOM file against its IOD (``dciodvfy -new``).

    Raises:
        ValidatorUnavailableError: No validator, or it timed out or could not start.
    """
    exe = executable or find_dciodvfy()
    if exe is None:
        raise ValidatorUnavailableError("dciodvfy is not installed (Debian package dicom3tools)")
    try:
        proc = subprocess.run(
            [exe, "-new", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValidatorUnavailableError(f"dciodvfy did not run to its end ({exc})") from exc
    lines = (proc.stdout + proc.stderr).splitlines()
    return ValidatorReport(
        errors=[line for line in lines if line.startswith("Error")],
        warnings=[line for line in lines if line.startswith("Warning")],
        output="\n".join(lines),
    )


def introduced_errors(report: ValidatorReport, source_errors: Iterable[str]) -> list[str]:
    """The error lines of ``report`` that no source report holds verbatim."""
    inherited = set(source_errors)
    return [line for line in report.errors if line not in inherited]


def redacted(line: str) -> str:
    """A validator line without the attribute values it quotes (``= <...>``)."""
    return _VALUE.sub(" = <...>", line)
