"""One run at a time per output folder: ``OUT.lock``, held with ``flock`` while a run writes.

The operating system releases the lock when its process ends, however it ends (``kill -9``, a
lost machine's mount aside), so a lock left by a dead run never blocks the next one: only a live
run does, and the second run refuses at once, naming the first (its pid, host and start time,
which the lock file holds). Where ``fcntl`` does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from dataprep.errors import OutputError
from dataprep.build.faults import os_error_fix

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"


class OutputLock:
    """Holds ``OUT.lock`` until :meth:`release`.

    Raises:
        OutputError: another live run holds it (named), or the lock cannot be created (the
            folder is read-only, missing or not ours: the error says which).
    """

    def __init__(self, out: Path):
        self.path = out.with_name(out.name + LOCK_SUFFIX)
        self.fd: int | None = None
        if fcntl is None:  # pragma: no cover
            return
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot create {self.path}: {exc.strerror or exc}\n  fix: {os_error_fix(exc)}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(fd)
                os.close(fd)
                raise OutputError(
                    f"{out} is being written by another run ({holder})\n  fix: wait for that run to finish or stop it, "
                    f"or choose another --out. The lock is released when its process ends, so a killed run never "
                    f"leaves one behind; only on a filesystem without locks (some network mounts) delete {self.path} "
                    f"yourself once no run writes there"
                ) from None
            # The holder before us may have removed the file between our open and our flock:
            # then we hold a lock on a file nobody else can see. Take the one on disk instead.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_unix": int(time.time())}).encode())
        self.fd = fd

    def release(self) -> None:
        """Remove the lock file and let go of it (idempotent)."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _describe(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started_unix"]))
        return f"pid {info['pid']} on {info['host']}, started {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that is still starting"
