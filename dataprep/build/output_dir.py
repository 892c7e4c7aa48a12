"""The output folder's life cycle: ``OUT.incomplete`` while a run writes, renamed to ``OUT`` on success
(or, for an output URL, staged locally and uploaded with ``manifest.json`` last).

What goes inside it is :mod:`dataprep.build.write`'s: shards, ``state.json``, the manifest.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from dataprep import storage
from dataprep.build.faults import os_error_fix
from dataprep.build.outlock import OutputLock
from dataprep.build.write import _sync_folder, write_json_atomic
from dataprep.columns import INCOMPLETE_SUFFIX, MANIFEST_FILE
from dataprep.dataset.manifest import Manifest
from dataprep.errors import OutputError

log = logging.getLogger("dataprep.run")


class DatasetDir:
    """The output folder's life cycle: ``OUT.incomplete`` while running, ``OUT`` on success.

    ``OUT.lock`` is held from the start to the end (:class:`~dataprep.build.outlock.OutputLock`): a
    second run on the same ``OUT`` refuses at once. With ``resume``, ``OUT.incomplete`` is kept
    as an interrupted run left it (:mod:`dataprep.build.checkpoint` continues it); otherwise one left
    by a dead run is removed.
    """

    resumable = True

    def __init__(self, out: Path, *, overwrite: bool, resume: bool = False):
        self.out = Path(out)
        self.tmp = self.out.with_name(self.out.name + INCOMPLETE_SUFFIX)
        self.lock = OutputLock(self.out)
        try:
            self._prepare(overwrite=overwrite, resume=resume)
        except OSError as exc:
            self.lock.release()
            raise OutputError(f"cannot create {self.tmp}: {exc.strerror or exc}\n  fix: {os_error_fix(exc)}") from exc
        except BaseException:
            self.lock.release()
            raise

    def _prepare(self, *, overwrite: bool, resume: bool) -> None:
        if self.out.exists():
            if resume:
                raise OutputError(f"{self.out} is a finished dataset: there is nothing to resume\n  fix: drop --resume "
                                  "(with --overwrite to build it again)")
            if not overwrite:
                raise OutputError(f"{self.out} already exists; pass --overwrite to replace it, or choose another --out")
            if not (self.out / MANIFEST_FILE).is_file():
                raise OutputError(
                    f"{self.out} exists and is not a dataprep dataset (no {MANIFEST_FILE}); "
                    "refusing to delete it even with --overwrite: remove it yourself or choose another --out"
                )
        if resume:
            if not self.tmp.is_dir():
                raise OutputError(f"nothing to resume: there is no {self.tmp}\n  fix: run again without --resume")
            return
        if self.tmp.exists():  # left by a run that died: never a dataset
            if (self.tmp / "checkpoint").is_dir():
                log.warning("%s holds an interrupted run's checkpoint; starting over (pass --resume to continue it)", self.tmp)
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)

    def commit(self, manifest: Manifest, splits: list[str]) -> None:
        shutil.rmtree(self.tmp / "checkpoint", ignore_errors=True)
        write_json_atomic(self.tmp / "dataset_dict.json", {"splits": splits})
        write_json_atomic(self.tmp / MANIFEST_FILE, manifest.to_dict())  # last: its presence marks a whole dataset
        if self.out.exists():
            old = self.out.with_name(self.out.name + ".old" + INCOMPLETE_SUFFIX)
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.out, old)
            os.replace(self.tmp, self.out)
            shutil.rmtree(old)
        else:
            os.replace(self.tmp, self.out)
        _sync_folder(self.out.parent)
        self.lock.release()

    def abort(self, *, keep: bool = False) -> None:
        """Give up: remove ``OUT.incomplete`` (``keep``: leave it for ``--resume``) and the lock."""
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.lock.release()


class UploadedDatasetDir:
    """:class:`DatasetDir` for an output URL: built in a local staging folder, uploaded on success
    with ``manifest.json`` last (object stores cannot rename a folder; the manifest's presence is
    what marks a whole dataset, as ``validate`` reads it). Not resumable: the staging folder is
    this process's own."""

    resumable = False

    def __init__(self, url: str, *, overwrite: bool):
        self.url, self.overwrite = url.rstrip("/"), overwrite
        storage.check_output(self.url, overwrite=overwrite, manifest=MANIFEST_FILE)
        self.tmp = Path(tempfile.mkdtemp(prefix="dataprep-staging-"))

    def commit(self, manifest: Manifest, splits: list[str]) -> None:
        write_json_atomic(self.tmp / "dataset_dict.json", {"splits": splits})
        write_json_atomic(self.tmp / MANIFEST_FILE, manifest.to_dict())
        storage.check_output(self.url, overwrite=self.overwrite, manifest=MANIFEST_FILE)  # still ours to replace
        self._keep = True  # a failed upload leaves the finished dataset here (the error says where)
        storage.upload(str(self.tmp), self.url, last=MANIFEST_FILE)
        self._keep = False
        shutil.rmtree(self.tmp)

    def abort(self, *, keep: bool = False) -> None:
        if not getattr(self, "_keep", False):
            shutil.rmtree(self.tmp, ignore_errors=True)


def open_output(out: str | Path, *, overwrite: bool, resume: bool = False) -> DatasetDir | UploadedDatasetDir:
    """Where a run writes: a local folder (renamed into place) or a URL (uploaded).

    Raises:
        OutputError: ``out`` exists (without ``overwrite``), another run writes it, it cannot be
            created, or ``resume`` finds nothing to continue (or is asked of a URL).
    """
    if storage.is_url(out):
        if resume:
            raise OutputError(f"--resume continues a run in a local folder; {out} is a URL (built in a staging folder "
                              "of its own run)\n  fix: run again without --resume, or write to a local --out and copy it")
        return UploadedDatasetDir(str(out), overwrite=overwrite)
    return DatasetDir(Path(out), overwrite=overwrite, resume=resume)
