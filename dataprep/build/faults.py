"""Operating-system faults as dataprep errors: a full disk, a read-only or forbidden folder, a
lost input. The library raises :class:`~dataprep.errors.OutputError` or
:class:`~dataprep.errors.InputError` with what happened and the fix; the CLI prints it, never a
traceback."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from dataprep.errors import DataprepError, InputError, OutputError

FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
FORBIDDEN = (errno.EACCES, errno.EPERM)


def os_error_fix(exc: OSError) -> str:
    """How to get past ``exc`` when writing."""
    if exc.errno in FULL:
        return "free space on that disk, or choose an --out on a disk with room"
    if exc.errno == errno.EROFS:
        return "choose an --out on a writable filesystem"
    if exc.errno in FORBIDDEN:
        return "choose an --out in a folder you may write to, or fix the folder's permissions"
    if exc.errno == errno.ENOENT:
        return "check that the folder above --out exists (and was not removed during the run)"
    return "check the output folder and its disk"


def os_fault(exc: OSError, *, out: Path, work: Path | None, inputs: Sequence[str], resumable: bool) -> DataprepError:
    """``exc`` (raised during a run writing ``out`` through ``work``) as the error to show.

    A fault on a path under the output (or with no path: a full disk or read-only filesystem
    reports none from some writers) is an output error; one on an input file is an input error.
    ``resumable``: the run's last checkpoint is kept, so the message says how to go on.
    """
    name = str(exc.filename or "")
    outputs = [str(out)] + ([str(work)] if work is not None else [])
    on_output = not name or any(name.startswith(p) for p in outputs) or exc.errno in (*FULL, errno.EROFS)
    what = exc.strerror or str(exc)
    if on_output:
        where = name or str(work or out)
        if exc.errno in FULL:
            message = f"no space left on the disk of {where} ({what})"
        elif exc.errno == errno.EROFS:
            message = f"{where} is on a read-only filesystem"
        elif exc.errno in FORBIDDEN:
            message = f"permission denied writing {where}"
        else:
            message = f"cannot write {where}: {what}"
        fix = os_error_fix(exc)
        if resumable:
            fix += f"; the run's last checkpoint is kept in {work}: continue it with --resume (or delete it)"
        else:
            fix += f"; nothing was left at {out}"
        return OutputError(f"{message}\n  fix: {fix}")
    location = next((i for i in inputs if os.path.abspath(i) == os.path.abspath(name)), name)
    return InputError(location, None, f"cannot read the input: {what}",
                      "check that the file is still there and readable (a moved or deleted input, a lost mount)")
