"""Optuna is the ledger, MLflow its mirror, and the mirror can be rebuilt: real sweeps in subprocesses whose MLflow
store is deleted (or loses runs) after they finished or half-way; the same command again writes back every run,
and the run table equals the original's.

What "equal" means (``run_table``): every run keyed by what it is (role, cell, arm, trial number, track, seed, tuning
run, budgets served), not
by its id; its name, status, tags (all but the parent's run id, which is an id), params, every metric's history
(steps and values), and for a cell run its artifacts (bytes; curves.parquet compared as a table whose run ids are
replaced by the runs' keys) and its dataset inputs. Run ids and times are the only things allowed to differ.

The stores are read in a fresh process each time: MLflow keeps one database engine per store and process, whose
open connection would go on reading a deleted database file.
"""
from __future__ import annotations

import concurrent.futures
import io
import math
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_sweep import check_counts, config_of, read_store, run_sweep, start_sweep, tail

MIRROR = ["--profile", "smoke", "name=mirror", "datasets=iris,moons", "optimizers=gd,adam", "batch_sizes=full,32",
          "trials=4", "epochs=5", "seeds=1", "population=4"]  # eight cells: a few done and some not at an interrupt
KEY_TAGS = ("role", "dataset", "optimizer", "batch_size", "arm", "trial_number", "track", "seed", "tuning_run",
            "budget")


def fresh(function, *args):
    """``function(*args)`` in a new process (see the module's docstring); its exceptions are raised here."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def counts_are_exact(runs_dir: Path, cfg) -> None:
    check_counts(read_store(runs_dir, cfg))


def run_key(run) -> tuple:
    return tuple(run.data.tags.get(k) for k in KEY_TAGS)


def run_table(runs_dir: Path, cfg) -> dict:
    """Every active run of the sweep's experiment, keyed by what it is (see the module's docstring)."""
    store = read_store(runs_dir, cfg)
    active = [r for r in store.runs if r.info.lifecycle_stage == "active"]
    keys = {r.info.run_id: run_key(r) for r in active}
    table = {}
    for run in active:
        key = run_key(run)
        assert key not in table, f"two active runs are {key}"
        history = {m: [(h.step, h.value) for h in sorted(store.client.get_metric_history(run.info.run_id, m),
                                                          key=lambda h: (h.step, h.value))]
                   for m in run.data.metrics}
        entry = {"name": run.info.run_name, "status": run.info.status, "params": dict(run.data.params),
                 "tags": {k: v for k, v in run.data.tags.items() if k != "mlflow.parentRunId"},
                 "parent": keys.get(run.data.tags.get("mlflow.parentRunId")), "metrics": history}
        if key[0] == "cell":
            entry["inputs"] = sorted(i.dataset.digest for i in run.inputs.dataset_inputs)
            entry["artifacts"] = artifacts(store, run, keys)
        table[key] = entry
    return table


def artifacts(store, run, keys: dict) -> dict:
    """A cell run's files: their bytes, curves.parquet as its rows with run ids replaced by the runs' keys."""
    root = Path(store.client.download_artifacts(run.info.run_id, "", str(store.runs_dir / "_download" /
                                                                         run.info.run_id)))
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = str(path.relative_to(root))
        if name == "curves.parquet":
            frame = pd.read_parquet(io.BytesIO(path.read_bytes()))
            frame["run_id"] = frame["run_id"].map(lambda i: keys.get(i, ("unknown run", i)))
            out[name] = frame.to_dict("list")
        else:
            out[name] = path.read_bytes()
    return out


def family(table: dict, cell: tuple) -> dict:
    """The runs of one cell: its cell run and its children."""
    cell_key = ("cell", *cell, *[None] * (len(KEY_TAGS) - 4))
    return {k: v for k, v in table.items() if k == cell_key or v["parent"] == cell_key}


def assert_same(before: dict, after: dict) -> None:
    assert sorted(before, key=str) == sorted(after, key=str), \
        f"runs differ: lost {set(before) - set(after)}, new {set(after) - set(before)}"
    for key in before:
        for part in before[key]:
            a, b = before[key][part], after[key][part]
            if part == "artifacts":
                assert a.keys() == b.keys(), (key, sorted(a), sorted(b))
                for name in a:
                    assert same_values(a[name], b[name]), (key, name)
            else:
                assert same_values(a, b), (key, part, a, b)


def same_values(a, b) -> bool:
    """Equal, NaN equal to NaN (curves.parquet keeps the epochs after a run stopped as NaN)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same_values, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def delete_mlflow_store(runs_dir: Path) -> None:
    """What a user loses: the database (with its write-ahead log) and the artifacts beside it."""
    for path in runs_dir.glob("mlflow.db*"):
        path.unlink()
    shutil.rmtree(runs_dir / "artifacts")


def trouble(stderr: str) -> str:
    """What went wrong in a sweep's stderr: every traceback, error and warning line, then its end."""
    lines = [line for line in stderr.splitlines() if line.strip() and "trial/s" not in line and "s/trial" not in line]
    start = next((i for i, line in enumerate(lines) if line.startswith(("Traceback", "error", "warning"))), None)
    return "\n".join(lines[start:start + 80] if start is not None else []) + "\n...\n" + tail(stderr, 20)


def summary_line(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if "in MLflow:" in line), "")


# --- a finished sweep ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_finished_sweeps_lost_mlflow_store_or_deleted_runs_are_written_again_run_for_run(tmp_path):
    """One finished sweep, two losses in turn: its whole MLflow store deleted, then (in the store written again) a
    trial run and an evaluation run deleted in the UI (a cell run's child count no longer matches). Each time the
    same command writes back what was lost, the run table equals the original's, and the two deleted runs come back
    under the same cell run, which keeps its one dataset input."""
    cfg = config_of(MIRROR)
    first = run_sweep(tmp_path, MIRROR, 2)
    assert first.returncode == 0, trouble(first.stderr)
    original = fresh(run_table, tmp_path, cfg)
    cells = len(cfg.cells())
    assert len([k for k in original if k[0] == "cell"]) == cells
    assert f"{cells}/{cells} cell runs FINISHED" in summary_line(first.stderr), trouble(first.stderr)

    again = run_sweep(tmp_path, MIRROR, 2, timeout=120)  # all there: nothing to do, and quickly
    assert again.returncode == 0 and "nothing to run" in again.stderr, tail(again.stderr)

    delete_mlflow_store(tmp_path)
    rebuilt = run_sweep(tmp_path, MIRROR, 2)
    assert rebuilt.returncode == 0, trouble(rebuilt.stderr)
    assert "nothing to run" not in rebuilt.stderr, trouble(rebuilt.stderr)
    assert f"{cells}/{cells} cell runs FINISHED" in summary_line(rebuilt.stderr), trouble(rebuilt.stderr)
    assert "lacks runs" not in rebuilt.stderr, trouble(rebuilt.stderr)
    assert_same(original, fresh(run_table, tmp_path, cfg))
    fresh(counts_are_exact, tmp_path, cfg)

    last = run_sweep(tmp_path, MIRROR, 2, timeout=120)
    assert last.returncode == 0 and "nothing to run" in last.stderr, tail(last.stderr)

    cell = cfg.cells()[1]
    parent, victims = fresh(delete_two_children, tmp_path, cfg, cell)
    rerun = run_sweep(tmp_path, MIRROR, 2)
    assert rerun.returncode == 0 and "nothing to run" not in rerun.stderr, trouble(rerun.stderr)
    assert_same(original, fresh(run_table, tmp_path, cfg))
    assert fresh(cell_run_and_stages, tmp_path, cfg, cell, victims) == (parent, ["deleted", "deleted"])
    print(f"sweep {first.seconds:.1f} s, check of a finished sweep {again.seconds:.1f} s, rebuild after the MLflow "
          f"store was deleted {rebuilt.seconds:.1f} s ({len(original)} runs), check again {last.seconds:.1f} s, "
          f"two deleted runs written again {rerun.seconds:.1f} s")


def delete_two_children(runs_dir: Path, cfg, cell) -> tuple[str, list[str]]:
    store = read_store(runs_dir, cfg)
    parent = store.cell_run(cell)
    victims = [store.children(parent, "trial")[0].info.run_id, store.children(parent, "eval")[-1].info.run_id]
    for run_id in victims:
        store.client.delete_run(run_id)
    return parent.info.run_id, victims


def cell_run_and_stages(runs_dir: Path, cfg, cell, run_ids: list[str]) -> tuple[str, list[str]]:
    store = read_store(runs_dir, cfg)
    return store.cell_run(cell).info.run_id, [store.client.get_run(r).info.lifecycle_stage for r in run_ids]


# --- a half-finished sweep -------------------------------------------------------------------------------------
def cells_done(runs_dir: Path, cfg) -> int:
    from study.sweep import sweep, tuning

    path = runs_dir / "optuna" / f"{cfg.name}.journal"
    if not path.is_file():
        return 0
    try:
        return sum(r.done and r.mirrored for r in sweep.cell_records(tuning.open_storage(str(path)), cfg).values())
    except (ValueError, KeyError):  # a line being written as we read, or no study yet: look again
        return 0


@pytest.mark.slow
def test_a_half_finished_sweeps_lost_mlflow_store_is_written_again_and_the_sweep_completes(tmp_path):
    """SIGINT once some cells are done, the MLflow store deleted, the same command again: the cells finished before
    come back run for run as they were, the others are resumed (their trials rewritten from the storage too), and
    every count is exact."""
    cfg = config_of(MIRROR)
    proc = start_sweep(tmp_path, MIRROR, 2, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 300
        while cells_done(tmp_path, cfg) < 3:
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline, "no cells done in time"
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 130, tail((tmp_path / "first.log").read_text())
    before = fresh(run_table, tmp_path, cfg)
    finished = [c for c in cfg.cells() if before.get(("cell", *c, *[None] * (len(KEY_TAGS) - 4)), {}).get("status")
                == "FINISHED"]
    assert len(finished) >= 3, finished
    delete_mlflow_store(tmp_path)

    rerun = run_sweep(tmp_path, MIRROR, 2)
    assert rerun.returncode == 0, trouble(rerun.stderr)
    cells = len(cfg.cells())
    assert f"{cells}/{cells} cell runs FINISHED" in summary_line(rerun.stderr), trouble(rerun.stderr)
    after = fresh(run_table, tmp_path, cfg)
    for cell in finished:
        assert_same(family(before, cell), family(after, cell))
    fresh(counts_are_exact, tmp_path, cfg)
    print(f"interrupted with {len(finished)}/{cells} cells finished; the rerun rebuilt them and finished the rest "
          f"in {rerun.seconds:.1f} s")


# --- the payloads, in process ----------------------------------------------------------------------------------
def test_curves_are_kept_bit_for_bit_and_compactly():
    from study.sweep.tuning import ledger

    rng = np.random.default_rng(0)
    curves = {"val_loss": np.cumsum(rng.random(200)), "updates": np.arange(1.0, 201.0) * 3,
              "odd": np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, np.finfo(float).max]), "empty": np.zeros(0)}
    packed = ledger.pack_curves(curves)
    back = ledger.unpack_curves(packed)
    assert back.keys() == curves.keys()
    for name, values in curves.items():
        assert np.asarray(back[name]).tobytes() == np.asarray(values, "<f8").tobytes(), name
    assert len(packed["float64"]) < 0.8 * 10.67 * sum(map(len, curves.values()))  # below plain base64's size
    assert ledger.unpack_curves({"val_loss": [0.5, 0.25]}) == {"val_loss": [0.5, 0.25]}  # payloads of older sweeps
