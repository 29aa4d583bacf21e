"""Sub-commands of ``opswatch`` beyond demo/run/bench, one module per command group.

Each module listed in :data:`MODULES` has ``register(subparsers)``, which adds its parser(s) with
``set_defaults(func=handler)``; a handler takes the parsed ``argparse.Namespace`` and returns the exit
status. Modules import heavy dependencies inside their handlers, so ``opswatch --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os

MODULES: tuple[str, ...] = (
    "template",
    "incident",
    "report",
    "silence",
    "platform",
    "rules",
)


DEFAULT_SERVER = "http://127.0.0.1:8050"


def add_server_options(command: argparse.ArgumentParser, write: bool) -> None:
    """The options of a command that talks to a running OpsWatch: ``--server``, ``--timeout`` and, for a
    write, ``--token`` (the API's bearer token)."""
    command.add_argument("--server", default=os.environ.get("OPSWATCH_URL", DEFAULT_SERVER),
                         help=f"OpsWatch's URL (default $OPSWATCH_URL or {DEFAULT_SERVER})")
    command.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    if write:
        command.add_argument("--token", default=os.environ.get("OPSWATCH_API_TOKEN"),
                             help="the API token (default $OPSWATCH_API_TOKEN)")


def register_all(subparsers: "argparse._SubParsersAction") -> None:
    """Let every module in :data:`MODULES` add its sub-commands to ``subparsers``."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
