"""Small JSON state files in the data directory (silences, notification log), written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from opswatch.errors import ConfigError


def write_json_atomic(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` via a temporary file, fsync and rename, so a crash leaves the old file
    or the new one, never a torn one. :raises OSError: when the directory cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_state(path: Path, version: int, what: str) -> dict | None:
    """The state saved at ``path`` (None when there is no file).

    :raises ConfigError: naming the file and why when it is unreadable, not JSON or of another version.
    """
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or state.get("version") != version:
            raise ValueError(f"version {state.get('version') if isinstance(state, dict) else None!r}, "
                             f"expected {version}")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot restore {what}: {exc}; move the file away to start without them") from exc
    return state
