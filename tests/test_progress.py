"""Progress: bytes read and ETA from the inputs, stages, quiet and JSON-lines modes."""

from __future__ import annotations

import json
import logging
import os

import pytest

from dataprep.build import progress
from dataprep.cli import main
from dataprep.build.progress import JsonLines, Progress, configure

from .conftest import RECIPES


class Batch:
    def __init__(self, num_rows: int):
        self.num_rows = num_rows


@pytest.fixture(autouse=True)
def text_logs_after():
    yield
    configure()  # leave the default mode (text, not quiet) for the next test


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    return now


def test_bytes_read_and_eta_from_the_open_file(tmp_path, clock):
    if not os.path.isdir("/proc/self/fdinfo"):
        pytest.skip("reading positions come from /proc (Linux)")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"y" * 3000)
    bar = Progress("sft", enabled=False, inputs=[a, b])
    assert bar.total_bytes == 4000
    items = bar.track(iter([(0, Batch(10)), (1, Batch(20))]))
    next(items)
    with open(b, "rb", buffering=0) as fh:
        fh.read(1500)
        next(items)
        clock[0] += 10.0
        bar.update(docs=25, tokens=5000)
        n = bar.numbers()
        assert (n["bytes_done"], n["bytes_total"], n["records"], n["documents"], n["tokens"]) == (2500, 4000, 30, 25, 5000)
        assert (n["stage"], n["elapsed_s"], n["records_per_s"], n["tokens_per_s"], n["eta_s"]) == ("tokenize", 10.0, 3.0, 500.0, 6.0)
        assert bar.line() == "sft · tokenize: 62% of 4.0 kB · 30 records (3/s) · 5,000 tokens (500/s) · ETA 6s"
    assert bar.bytes_done() == 4000  # b was open and is closed now: read to the end
    assert list(items) == [] and bar.bytes_done() == 4000


def test_bytes_read_by_workers_come_from_their_positions(tmp_path, clock):
    """--engine ray: the driver never opens the inputs; each chunk brings its reader's position."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    bar = Progress("pretrain", enabled=False, inputs=[a, b], sizes=[1000, 3000])
    bar.read_elsewhere(0, 10, position=400, file_done=False)
    assert (bar.bytes_done(), bar.records, bar.stage) == (400, 10, "tokenize")  # not open here: still 400
    bar.read_elsewhere(0, 5, position=None, file_done=True)  # the file's last block
    assert bar.bytes_done() == 1000
    bar.read_elsewhere(1, 7, position=None, file_done=False)  # a URL: no position, moves at the file's end
    assert bar.bytes_done() == 1000
    bar.read_elsewhere(1, 0, position=None, file_done=True)
    clock[0] += 4.0
    n = bar.numbers()
    assert (n["bytes_done"], n["records"], n["eta_s"]) == (4000, 22, 0.0)


def test_without_inputs_there_is_no_eta(clock):
    bar = Progress("train", enabled=False)
    clock[0] += 2.0
    bar.update(docs=4, tokens=100, records=4)
    assert "eta_s" not in bar.numbers() and bar.line() == "train: 4 records (2/s) · 100 tokens (50/s)"


def test_json_lines_mode(capsys, clock):
    configure(log_format="json")
    bar = Progress("pretrain", enabled=True, log_every=0.0)  # JSON mode never draws a bar
    assert bar._bar is None
    bar.set_stage("tokenize")
    clock[0] += 1.0
    bar.update(docs=2, tokens=10, records=3)
    bar.close()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["stage", "progress", "done"]
    assert lines[1]["tokens"] == 10 and lines[1]["records"] == 3 and lines[1]["stage"] == "tokenize"
    assert lines[1]["level"] == "info" and lines[1]["logger"] == "dataprep.progress"
    assert lines[1]["message"] == "pretrain · tokenize: 3 records (3/s) · 10 tokens (10/s)"


def test_json_formatter_keeps_exceptions():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), exc_info=__import__("sys").exc_info())
    obj = json.loads(JsonLines().format(record))
    assert obj["message"] == "failed here" and obj["level"] == "error" and "ValueError: boom" in obj["exception"]


def test_quiet_shows_nothing(capsys, clock):
    configure(quiet=True)
    bar = Progress("sft", enabled=True, log_every=0.0)
    assert bar._bar is None
    bar.set_stage("finish")
    bar.update(docs=1, tokens=1)
    bar.close()
    assert capsys.readouterr().err == ""


def test_cli_global_json_logs_and_quiet(tmp_path, capsys):
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as info:
        main(["--log-format", "json", "run", str(RECIPES / "demo-sft.yaml"), "--out", str(out), "-w", "1"])
    captured = capsys.readouterr()
    assert info.value.code == 0 and f"wrote {out}" in captured.out
    events = [json.loads(line) for line in captured.err.splitlines()]
    assert [e["stage"] for e in events if e.get("event") == "stage"] == ["tokenize", "finish", "checksums"]
    done = events[-1]
    assert done["event"] == "done" and done["records"] == 6000 and done["bytes_done"] == done["bytes_total"] > 0
    with pytest.raises(SystemExit) as info:  # an error is a JSON line too
        main(["--log-format", "json", "run", str(RECIPES / "demo-sft.yaml"), "--out", str(out)])
    error = json.loads(capsys.readouterr().err.strip())
    assert info.value.code == 1 and error["error"] == "OutputError" and "already exists" in error["message"]
    with pytest.raises(SystemExit) as info:  # `dataprep -q run` = `dataprep run -q`: nothing but warnings
        main(["-q", "run", str(RECIPES / "demo-sft.yaml"), "--out", str(out), "--overwrite", "-w", "1"])
    captured = capsys.readouterr()
    assert info.value.code == 0 and captured.out == "" and captured.err == ""
