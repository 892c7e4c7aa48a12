"""The command line. Thin: parse options, call the library, turn errors into messages.

Every failure a user can cause reaches them as ``error: ...`` and ``fix: ...`` on stderr, never a
traceback. Exit status: 0 success, 1 a dataprep error (a :class:`~dataprep.errors.DataprepError`, or an
OSError on a path the user named), 2 usage (click's own message), 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

from dataprep.cli import build_commands, look_commands, train_commands
from dataprep.cli.app import OS_FIX, cli, main

__all__ = ["OS_FIX", "build_commands", "cli", "look_commands", "main", "train_commands"]  # the command modules: imported to register them
