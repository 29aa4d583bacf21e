"""Stopping child processes started in their own process group (``start_new_session=True``)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(proc: subprocess.Popen, timeout_seconds: float = 15.0) -> None:
    """SIGTERM ``proc``'s process group, then SIGKILL it if it has not exited within ``timeout_seconds``.

    Does nothing when the process has already exited; never raises for a group that is already gone.
    """
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_seconds)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
