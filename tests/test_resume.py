"""Resume equals uninterrupted: a small sweep (population 4, as the default profile trains) interrupted with SIGINT at
three moments and resumed each time to the end gives the trials, the tuned hyperparameters, the evaluations and the
report's tables of a sweep never interrupted.

What is compared:
  - every finished tuning trial of every cell and arm, in the order asked: parameters, value, state (and a random-arm
    trial's test loss); a trial failed by the interruption and asked again is its retry, so trial numbers are not
    compared (the failed one took a number);
  - every evaluation's hyperparameters, final values (``seconds`` aside) and the budgets it serves, keyed by track,
    tuning run, trial and seed; the equal-wall-time budget aside (its cap is each sweep's own measured timing: an
    interrupted sweep keeps the timing it measured before its first cell, but two sweeps measure two timings);
  - every table of the report (tables/*.csv, built from the stores with fewer resamples: ``report_tables``), cell
    for cell as text, apart from what measured time decides, the same between two uninterrupted sweeps: columns
    named ``seconds*``, rows of the equal-wall-time budget (``budget`` or ``profile`` = ``seconds``: each cell's
    measured ``seconds_per_epoch`` sets them), and profile_times_seconds.csv (times to target at that budget); the
    sweep's own directory, which reproducibility.csv names, is replaced by a placeholder.
"""
from __future__ import annotations

import csv
import io
import os
import signal
import time
from pathlib import Path

import pytest

from report_fixtures import fast_settings
from test_sweep import config_of, journal, run_sweep, start_sweep, tail

# one dataset (its four cells still give the report's 30-odd tables); moons, whose cells take longest, so each of
# the three moments lasts long enough to be caught
RESUME = ["--profile", "smoke", "name=resume", "datasets=moons", "optimizers=momentum,adam",
          "batch_sizes=full,32", "trials=8", "epochs=8", "seeds=3", "population=4"]
WALL_TIME = "seconds"  # the equal-wall-time budget's name in the report's tables
TIMED_TABLES = ("profile_times_seconds.csv",)
REPORT_SETTINGS = fast_settings(bayes_samples=2000, bootstrap_resamples=200, stability_resamples=100)


# --- where a sweep is ----------------------------------------------------------------------------------------
def state(runs_dir: Path, cfg) -> dict:
    """Per cell: finished and RUNNING tuning trials (both arms), evaluations kept, done; None before the journal."""
    import optuna
    from optuna.trial import TrialState
    from study.sweep import tuning
    from study.sweep.tuning import ledger

    if not (runs_dir / "optuna" / f"{cfg.name}.journal").is_file():
        return {}
    storage = journal(runs_dir, cfg.name)
    names = {s.study_name for s in storage.get_all_studies()}
    out = {}
    for cell in cfg.cells():
        finished = running = 0
        for run, arm in tuning.tunings(cfg):
            name = tuning.study_name(cfg.name, cell, arm, run)
            if name not in names:
                continue
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
            finished += sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
            running += sum(t.state == TrialState.RUNNING for t in trials)
        attrs = {}
        if tuning.study_name(cfg.name, cell) in names:
            attrs = optuna.load_study(study_name=tuning.study_name(cfg.name, cell), storage=storage).user_attrs
        out[cell] = {"finished": finished, "running": running, "evals": len(ledger.evaluations(attrs)),
                     "done": ledger.read(attrs).done}
    return out


def inside_tuning(cells: dict, cfg) -> bool:
    return any(s["running"] and 0 < s["finished"] for s in cells.values())


def among_evaluations(cells: dict, cfg) -> bool:
    return any(s["evals"] and not s["done"] for s in cells.values())


def finishing_cells(cells: dict, cfg) -> bool:
    # the first cell done: with four cells on two workers, the last two can end together, before a Ctrl-C sent at
    # two done lands
    return sum(s["done"] for s in cells.values()) >= 1


def interrupt(runs_dir: Path, args: list, moment, log: Path) -> dict:
    """Start the sweep, SIGINT its whole process group (Ctrl-C) at ``moment``; the sweep's state then."""
    cfg = config_of(args)
    proc = start_sweep(runs_dir, args, 2, log)
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, f"the sweep ended before {moment.__name__}:\n{tail(log.read_text())}"
            assert time.monotonic() < deadline, f"never {moment.__name__}"
            try:
                cells = state(runs_dir, cfg)
            except (ValueError, KeyError):  # a line being written as we read: look again
                cells = {}
            if cells and moment(cells, cfg):
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 130, tail(log.read_text())
    return cells


# --- what a sweep gave -----------------------------------------------------------------------------------------
def outcomes(runs_dir: Path, cfg) -> dict:
    """Trials (in the order asked, per cell and arm, without their numbers), tuned hyperparameters and evaluations."""
    import optuna
    from study.sweep import tuning
    from study.sweep.tuning import ledger

    storage = journal(runs_dir, cfg.name)
    trials, _, _ = tuning.read_trials(storage, cfg.name, cfg.stored())
    evals = {}
    for cell in cfg.cells():
        study = optuna.load_study(study_name=tuning.study_name(cfg.name, cell), storage=storage)
        book = ledger.Ledger(study)
        for key, payload in book.eval_payloads().items():
            budgets = tuple(b for b in payload["budgets"] if b != WALL_TIME)
            if budgets:  # keyed without the trial's number: a trial failed by the interrupt is asked again as
                track, run, _, seed = key  # the next number, so the same choice can carry another number
                evals[(cell, track, run, budgets, seed)] = (
                    {k: v for k, v in payload["final"].items() if k != "seconds"}, payload["hyper"])
        assert book.record.done and book.record.mirrored, cell
    return {"trials": [{k: v for k, v in t.items() if k != "number"} for t in trials], "evals": evals}


def report_tables(runs_dir: Path, out: Path, sweep: str) -> dict:
    """The report's tables, built here (``build.write``, what ``pipelines.report`` runs once the stores are read)
    with fewer posterior draws and resamples: every table is still computed from the stores, and both sides of
    each comparison are built alike."""
    from study.report import build, inputs

    build.write(inputs.load(runs_dir, sweep), out, REPORT_SETTINGS)
    tables = {}
    for path in sorted((out / "tables").glob("*.csv")):
        if path.name in TIMED_TABLES:
            continue
        rows = list(csv.reader(io.StringIO(path.read_text().replace(str(runs_dir), "<runs-dir>"))))
        header, body = rows[0], rows[1:]
        keep = [i for i, name in enumerate(header) if "seconds" not in name and name != "run_id"]  # MLflow's: random
        budget = [i for i, name in enumerate(header) if name in ("budget", "profile")]
        tables[path.name] = [[header[i] for i in keep]] + [[row[i] for i in keep] for row in body
                                                           if not any(row[i] == WALL_TIME for i in budget)]
    return tables


@pytest.mark.slow
def test_a_sweep_interrupted_three_times_and_resumed_equals_one_never_interrupted(tmp_path):
    cfg = config_of(RESUME)
    reference = tmp_path / "uninterrupted"
    proc = run_sweep(reference, RESUME, 2)
    assert proc.returncode == 0, tail(proc.stderr)
    expected = outcomes(reference, cfg)
    expected_tables = report_tables(reference, tmp_path / "report-uninterrupted", cfg.name)
    assert len(expected_tables) > 25 and expected["trials"] and expected["evals"]

    seen = []
    for moment in (inside_tuning, among_evaluations, finishing_cells):
        runs_dir = tmp_path / moment.__name__
        at = interrupt(runs_dir, RESUME, moment, tmp_path / f"{moment.__name__}.log")
        resumed = run_sweep(runs_dir, RESUME, 2)
        assert resumed.returncode == 0, tail(resumed.stderr)
        got = outcomes(runs_dir, cfg)
        assert got["trials"] == expected["trials"], f"{moment.__name__}: the trials differ"
        assert got["evals"] == expected["evals"], f"{moment.__name__}: the evaluations differ"
        tables = report_tables(runs_dir, tmp_path / f"report-{moment.__name__}", cfg.name)
        assert tables.keys() == expected_tables.keys()
        different = [name for name in tables if tables[name] != expected_tables[name]]
        assert not different, f"{moment.__name__}: tables differ: {different}"
        failed = sum(v["running"] for v in at.values())
        seen.append(f"{moment.__name__}: {sum(v['finished'] for v in at.values())} trials finished, {failed} "
                    f"running, {sum(v['evals'] for v in at.values())} evaluations kept, "
                    f"{sum(v['done'] for v in at.values())} cells done at the interrupt")
    print("\n".join(seen))


@pytest.mark.parametrize("optimizer, hyper", [
    ("adam", {"eta": [1e-3, 3e-3, 1e-2, 3e-2], "beta1": [0.9] * 4, "beta2": [0.999] * 4, "eps": [1e-8] * 4}),
    ("momentum", {"eta": [0.01, 0.1, 0.5, 50.0], "gamma": [0.9, 0.5, 0.99, 0.9]})])  # the last one diverges
@pytest.mark.parametrize("batch", ["full", "32"])
def test_members_give_bit_for_bit_what_they_give_in_a_smaller_population(optimizer, hyper, batch):
    """What makes retrying part of a population exact: after a worker died with two of four trials told, the other
    two are trained as a population of two, and must give what they would have given among four."""
    import numpy as np
    from study.core import data, nn, train

    split = data.load("moons", 10000, 0.2, 0.2)
    net = nn.MLP((split.n_features, 16, split.n_outputs), "relu", split.task)
    four = train.train(net, split, optimizer, {k: np.array(v) for k, v in hyper.items()}, batch, 10, 10000,
                       net.init(10000, 4))
    two = train.train(net, split, optimizer, {k: np.array(v[2:]) for k, v in hyper.items()}, batch, 10, 10000,
                      net.init(10000, 2))
    for name in four.history:
        if name != "seconds":
            assert four.history[name][2:].tobytes() == two.history[name].tobytes(), name
    assert four.theta[2:].tobytes() == two.theta.tobytes()
    assert four.diverged[2:].tolist() == two.diverged.tolist()


ASKING = ["--profile", "smoke", "name=asking", "datasets=iris", "optimizers=adam", "batch_sizes=full", "trials=200",
          "population=200", "epochs=2", "seeds=1", "random_arm=false"]


@pytest.mark.slow
def test_ctrl_c_is_honoured_between_asks_and_what_was_asked_is_asked_again(tmp_path):
    """A large population is asked one trial at a time: SIGINT in the middle stops before the next ask; the trials
    asked so far are failed and queued again (nothing left RUNNING), and the rerun asks them first, at their places,
    then finishes with exact counts."""
    from optuna.trial import TrialState

    cfg = config_of(ASKING)
    log = tmp_path / "first.log"
    at = interrupt(tmp_path, ASKING, lambda cells, cfg: any(s["running"] for s in cells.values()), log)
    assert "Traceback" not in log.read_text(), tail(log.read_text())
    import optuna
    from study.sweep import tuning

    study = optuna.load_study(study_name=tuning.study_name(cfg.name, cfg.cells()[0]),
                              storage=journal(tmp_path, cfg.name))
    trials = study.get_trials(deepcopy=False)
    states = {s: [t for t in trials if t.state == s] for s in TrialState}
    assert not states[TrialState.RUNNING] and not states[TrialState.COMPLETE], {s: len(v) for s, v in states.items()}
    asked = states[TrialState.FAIL]
    assert 0 < len(asked) < cfg.profile.trials and len(states[TrialState.WAITING]) == len(asked)
    queued = sorted(states[TrialState.WAITING], key=lambda t: t.number)
    assert [t.user_attrs["retry_of"] for t in queued] == [t.number for t in sorted(asked, key=lambda t: t.number)]
    resumed = run_sweep(tmp_path, ASKING, 1)
    assert resumed.returncode == 0, tail(resumed.stderr)
    after = study.get_trials(deepcopy=False)
    finished = [t for t in after if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == cfg.profile.trials and not [t for t in after if t.state == TrialState.WAITING]
    print(f"interrupted with {len(asked)} of {cfg.profile.trials} trials asked ({at[cfg.cells()[0]]['running']} RUNNING at "
          f"the last look); the rerun took {resumed.seconds:.1f} s")
