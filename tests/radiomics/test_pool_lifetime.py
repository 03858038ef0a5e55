"""Extraction worker processes end with the process that started them.

A server killed with SIGKILL (or by the out-of-memory killer) cannot shut its radiomics pool
down; the workers must notice and exit rather than live on holding memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.processes import child_processes, process_alive

_PARENT = """
import os, sys, time
from radserve.radiomics import process_pool

if __name__ == "__main__":
    pool = process_pool(2)
    futures = [pool.submit(os.getpid) for _ in range(8)]
    print(" ".join(str(pid) for pid in sorted({f.result() for f in futures})), flush=True)
    time.sleep(600)
"""


def test_workers_exit_when_the_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        answered = {int(pid) for pid in parent.stdout.readline().split()}
        workers = child_processes(parent.pid)
        assert answered and answered <= set(workers)
        assert all(process_alive(pid) for pid in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    # Generous: the workers react at once; a loaded machine may take a moment to run them.
    deadline = time.monotonic() + 60
    while any(process_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if process_alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"worker processes {survivors} outlived their killed parent"
