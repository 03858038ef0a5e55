"""The kill and load suites of ``bench/`` in their bounded forms (``--check``): each runs
against real server processes and exits non-zero unless every promise held; the figures
they print are shown with ``pytest -s``. Their long forms are run by hand (see
docs/reliability.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, require

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _run(script: str, *args: str, timeout_s: float) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / script), *args, "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_kill_suite_loses_and_duplicates_nothing() -> None:
    """SIGKILL three times, at seeded random moments of STOW-RS, jobs and export, with the
    shipped model and a real Orthanc: 0 instances lost, 0 jobs lost, duplicated or failed,
    0 results missing or stray in Orthanc, 0 staging files left."""
    require(shutil.which("Orthanc") is not None, "Orthanc not installed (Debian package orthanc)")
    out = _run("kill.py", "--studies", "3", "--kills", "3", "--seed", "7", timeout_s=900)
    assert "| acknowledged instances lost | 0 |" in out


def test_the_load_suite_keeps_healthz_fast_and_answers_no_5xx() -> None:
    """Concurrent STOW-RS senders and QIDO-RS / WADO-RS readers, bounded in count: every
    study stored, no 5xx but 503, ``/healthz`` under a second throughout."""
    out = _run("load.py", "--studies", "8", "--senders", "4", "--readers", "3", timeout_s=600)
    assert "instances/s" in out
