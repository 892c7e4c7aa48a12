"""dataprep.build.lean_imports: a run's processes never import pandas for pyarrow's conversions,
and pandas still works there when something asks for it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .conftest import RECIPES


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_conversions_do_not_import_pandas_and_pandas_still_works():
    out = _python("""
        import sys
        from dataprep.build.lean_imports import pyarrow_without_pandas
        pyarrow_without_pandas()
        import numpy as np, pyarrow as pa
        pa.array([1, 2]); pa.scalar(3, pa.int32()); pa.array(np.arange(3)); pa.RecordBatch.from_pydict({"a": ["x"]})
        print("pandas" in sys.modules)
        frame = pa.table({"a": [1, 2]}).to_pandas()  # pyarrow imports pandas when asked for it
        import pandas
        print(type(frame).__name__, list(pa.array(pandas.Series([4, 5])).to_pylist()))
    """)
    assert out.split() == ["False", "DataFrame", "[4,", "5]"]


def test_a_cli_run_and_its_workers_never_import_pandas(tmp_path):
    """``dataprep run`` as its own process: -X importtime lists every module it and its spawned
    workers (fine-tuning, two workers) import; pandas is not among them."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "dataprep", "-q", "run", str(RECIPES / "demo-sft.yaml"),
                           "--out", str(tmp_path / "out"), "-w", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert imported.count("dataprep.tasks.registry") == 2  # this process and its worker both listed
    # pyarrow's one look for pandas is listed as "pandas" (found nothing); pandas itself would bring pandas.core
    assert "pyarrow" in imported and not [name for name in imported if name.startswith("pandas.")]


def test_main_called_in_process_leaves_pyarrow_as_it_was(tmp_path):
    """main(argv) in a process that goes on (a test, a script) does not change what pyarrow imports."""
    out = _python(f"""
        import sys
        from dataprep.cli import main
        try:
            main(["-q", "run", {str(RECIPES / "demo-sft.yaml")!r}, "--out", {str(tmp_path / "out")!r}, "-w", "1"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        import pandas, pyarrow as pa
        print("pandas" in sys.modules, pa.array(pandas.Series([1.0, float("nan")])).null_count)  # pandas' NaN is null
    """)
    assert out.split() == ["True", "1"]


def test_a_worker_process_warms_up_without_pandas():
    """What a run's spawned worker runs first (its imports and encoders), then a conversion."""
    out = _python("""
        import sys
        from dataprep.build.run import _warm_worker
        _warm_worker()
        import pyarrow as pa
        pa.array(["x"])
        print("pandas" in sys.modules)
    """)
    assert out.split() == ["False"]
