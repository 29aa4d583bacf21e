"""Child processes in their own process group (``start_new_session=True``): a port for them, and stopping them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def free_port() -> int:
    """A loopback port the kernel just handed out (bind to port 0), released for a child to listen on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
