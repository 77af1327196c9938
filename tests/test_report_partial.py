"""The report on partial data, from real sweeps: an interrupted sweep (SIGINT after some cells finished), a one-cell
sweep, and a finished sweep whose MLflow store lost cell runs. Each gives report.html, report.md and tables/ with no
traceback, and near the top a note naming what is missing. The same builds check the output directory's contract:
a marked report directory is replaced (stale files go), a rebuild is byte-identical, the marker stays out of the
MLflow report run."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipelines import report
from pipelines.cli import run
from study.report.document import output
from study.sweep import tracking

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GRID = ["datasets=iris,wine", "optimizers=gd,adam", "batch_sizes=full,32", "trials=3", "epochs=3", "seeds=2"]
CELLS = [(d, o, b) for d in ("iris", "wine") for o in ("gd", "adam") for b in ("full", "32")]


def sweep_command(runs_dir: Path, overrides: list) -> list:
    return [sys.executable, "-m", "pipelines.sweep", "--profile", "smoke", "--runs-dir", str(runs_dir), *overrides,
            "--workers", "1"]


def sweep_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def finish_sweep(runs_dir: Path, overrides: list) -> None:
    done = subprocess.run(sweep_command(runs_dir, overrides), cwd=ROOT, env=sweep_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def interrupt_sweep(runs_dir: Path, log: Path, cells_done: int) -> int:
    """Start the sweep, watch its Optuna journal until ``cells_done`` cells are done, then SIGINT it (what Ctrl-C
    sends); returns its exit status. (Its progress, sent to a file, is a line every 30 s: too coarse to watch.)"""
    from test_resume import state
    from test_sweep import config_of

    cfg = config_of(["--profile", "smoke", *GRID])
    proc = subprocess.Popen(sweep_command(runs_dir, GRID), cwd=ROOT, env=sweep_env(), stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))
    deadline = time.monotonic() + 600
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                cells = state(runs_dir, cfg).values()
            except (ValueError, KeyError):  # a journal line being written as we read: look again
                cells = []
            started = any(cell["running"] or cell["finished"] for cell in cells)  # its Ctrl-C handling is on
            if started and sum(cell["done"] for cell in cells) >= cells_done:
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.05)
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()


def cell_runs(runs_dir: Path, sweep: str = "smoke") -> dict:
    """(dataset, optimizer, batch size) -> the cell's MLflow run."""
    client = tracking.client(runs_dir)
    experiment = client.get_experiment_by_name(sweep).experiment_id
    return {(r.data.tags["dataset"], r.data.tags["optimizer"], r.data.tags["batch_size"]): r
            for r in tracking.runs(client, experiment, "tags.role = 'cell'")}


def build(argv, capsys) -> str:
    """The real entry point; returns its stdout. A traceback would fail the test here."""
    with pytest.raises(SystemExit) as stopped:
        run(report.main, argv)
    captured = capsys.readouterr()
    assert stopped.value.code == 0, captured.err[-3000:]
    return captured.out


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def note(markdown: str) -> str:
    assert "## What this report rests on" in markdown
    return markdown.split("## What this report rests on", 1)[1].split("\n## ", 1)[0]


def assert_a_whole_report(out: Path) -> str:
    markdown = (out / "report.md").read_text()
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert {"verdict.csv", "cells.csv", "coverage.csv"} <= {p.name for p in (out / "tables").iterdir()}
    figures = set(re.findall(r"\(figures/([\w.-]+\.png)\)", markdown))
    assert figures == {p.name for p in (out / "figures").iterdir()} and figures
    listed = output.read_marker(out)  # the marker lists exactly what is there
    assert sorted(listed) == sorted(f"{k}/" if v == "dir" else k for k, v in snapshot(out).items()
                                    if k != output.MARKER)
    return markdown


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Three real sweeps on the smoke profile: 'interrupted' (SIGINT after three of its eight cells), 'one_cell'
    (iris, adam, full batch) and 'lost' (eight cells finished, then two cell runs deleted from MLflow)."""
    base = tmp_path_factory.mktemp("partial")
    interrupted = base / "interrupted"
    status = interrupt_sweep(interrupted, base / "interrupted.log", cells_done=3)
    assert status == 130, (base / "interrupted.log").read_text()[-2000:]
    one_cell = base / "one_cell"
    finish_sweep(one_cell, ["datasets=iris", "optimizers=adam", "batch_sizes=full", "trials=3", "epochs=3",
                            "seeds=2"])
    lost = base / "lost"
    finish_sweep(lost, GRID)
    client = tracking.client(lost)
    for cell in (("iris", "gd", "full"), ("wine", "gd", "full")):
        client.delete_run(cell_runs(lost)[cell].info.run_id)
    return {"interrupted": interrupted, "one_cell": one_cell, "lost": lost, "base": base}


def test_one_cell_then_an_interrupted_sweep_into_one_directory(stores, capsys):
    """(b) a one-cell sweep into an existing empty directory; then (a) the interrupted sweep into the same,
    now marked, directory: replaced, with no file of the one-cell report left; built again: byte-identical."""
    out = stores["base"] / "out"
    out.mkdir()
    build(["--runs-dir", str(stores["one_cell"]), "--out", str(out), "--no-log"], capsys)
    markdown = assert_a_whole_report(out)
    text = note(markdown)
    assert "One cell only (iris/adam/full)" in text and "nothing to compare" in text
    assert "statistic n/a" not in markdown and "|  |" not in markdown  # no test reported on nothing

    finished = {cell for cell, r in cell_runs(stores["interrupted"]).items() if r.info.status == "FINISHED"}
    assert 3 <= len(finished) < len(CELLS), finished
    printed = build(["--runs-dir", str(stores["interrupted"]), "--out", str(out)], capsys)
    assert "logged as MLflow run" in printed
    markdown = assert_a_whole_report(out)  # the new marker lists exactly what is there: nothing stale is left
    text = note(markdown)
    assert f"of its {len(CELLS)} cells** ({len(finished)} finished)" in text
    coverage = pd.read_csv(out / "tables" / "coverage.csv", dtype=str, keep_default_na=False)
    state = {(r.dataset, r.optimizer, r.batch_size): r.status for r in coverage.itertuples()}
    assert sorted(state) == sorted(CELLS)
    assert {c for c, s in state.items() if s in ("in the report", "set aside")} == finished
    for cell in set(CELLS) - finished:  # the note names every cell that did not finish
        assert state[cell] == "not finished" and "/".join(cell) in text
    for cell in (c for c, s in state.items() if s == "set aside"):
        assert "/".join(cell) in text
    used = [c for c, s in state.items() if s == "in the report"]
    intro = [p for p in markdown.split("\n\n") if not p.startswith(("#", "![", "*"))][0]  # after the answer figure
    assert intro.startswith(f"{len({c[1] for c in used})} optimizers")  # the intro counts what the report rests on

    client = tracking.client(stores["interrupted"])
    experiment = client.get_experiment_by_name("smoke").experiment_id
    (report_run,) = tracking.runs(client, experiment, "tags.role = 'report'")
    logged = {f.path for f in client.list_artifacts(report_run.info.run_id)}
    assert logged == {"report.html", "report.md", "figures", "tables"}  # the marker is the directory's, not MLflow's

    first = snapshot(out)
    build(["--runs-dir", str(stores["interrupted"]), "--out", str(out), "--no-log"], capsys)
    assert snapshot(out) == first  # every file, the marker too
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_a_store_missing_cell_runs(stores, capsys):
    """(c) a finished sweep whose MLflow store lost two cell runs: the report rests on what is recorded and names
    the two."""
    out = stores["base"] / "lost_report"
    build(["--runs-dir", str(stores["lost"]), "--out", str(out), "--no-log"], capsys)
    markdown = assert_a_whole_report(out)
    text = note(markdown)
    assert "Finished, but missing from the MLflow store (2): iris/gd/full" in text and "wine/gd/full" in text
    coverage = pd.read_csv(out / "tables" / "coverage.csv", dtype=str, keep_default_na=False)
    state = {(r.dataset, r.optimizer, r.batch_size): r.status for r in coverage.itertuples()}
    assert [c for c, s in state.items() if s == "curves missing"] == [("iris", "gd", "full"), ("wine", "gd", "full")]
    assert {s for s in state.values()} <= {"in the report", "set aside", "curves missing"}
    used = sorted(c for c, s in state.items() if s == "in the report")
    assert len(used) == 4 and len({c[0] for c in used}) == 2  # both datasets, the treatments recorded on both
    cells = pd.read_csv(out / "tables" / "cells.csv", dtype={"batch_size": str})
    assert sorted(set(zip(cells["dataset"], cells["optimizer"], cells["batch_size"]))) == used


def test_a_sweep_with_no_finished_evaluation_is_one_line(tmp_path, capsys):
    """Interrupted before any cell was evaluated: nothing to build a report on, one line and exit 2."""
    runs_dir = tmp_path / "runs"
    status = interrupt_sweep(runs_dir, tmp_path / "log", cells_done=0)
    assert status == 130
    if any(r.info.status == "FINISHED" for r in cell_runs(runs_dir).values()):
        pytest.skip("the sweep finished a cell before the signal arrived")
    with pytest.raises(SystemExit) as stopped:
        run(report.main, ["--runs-dir", str(runs_dir), "--out", str(tmp_path / "r"), "--no-log"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and err.startswith("error: --sweep: "), err
    assert not (tmp_path / "r").exists()
