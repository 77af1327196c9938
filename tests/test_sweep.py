"""The sweep end to end: `python -m pipelines.sweep` in subprocesses, its records read back through MlflowClient
and Optuna, checked against the contracts of DESIGN §3 and the sweep issue.

One small smoke sweep is run twice from scratch, in two directories at the same time (two workers and one worker):
most tests read the first; the two are compared number for number. The resume tests (SIGKILL, SIGINT) run their
own slightly larger sweeps, kill them half-way and rerun the same command to completion.
"""
from __future__ import annotations

import concurrent.futures
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml

from study.core import data, nn, optim
from study.schema.sweep import RangeSpec, Sweep
from study.sweep import config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["--profile", "smoke", "datasets=iris,diabetes", "optimizers=momentum,adam", "batch_sizes=full,32",
         "trials=4", "epochs=5", "seeds=2"]
STATES = {"COMPLETE", "PRUNED", "FAIL", "DIVERGED"}
# per epoch in MLflow (val_accuracy too on classification sets); everything else is a final value
TRIAL_CURVES = ("val_loss",)
EVAL_CURVES = ("train_loss", "val_loss", "grad_norm")


# --- Running the CLI ---------------------------------------------------------------------------------------------
def sweep_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def command(runs_dir: Path, args: list, workers: int) -> list:
    return [sys.executable, "-m", "pipelines.sweep", "--runs-dir", str(runs_dir), "--workers", str(workers), *args]


def run_sweep(runs_dir: Path, args: list, workers: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    started = time.monotonic()
    proc = subprocess.run(command(runs_dir, args, workers), cwd=REPO, env=sweep_env(), capture_output=True,
                          text=True, timeout=timeout)
    proc.seconds = time.monotonic() - started
    return proc


def tail(stderr: str, lines: int = 60) -> str:
    """The end of a sweep's stderr without its progress bar (tqdm redraws with carriage returns)."""
    kept = [line for line in stderr.splitlines()  # splitlines also splits at tqdm's carriage returns
            if line.strip() and "trial/s" not in line and "s/trial" not in line]
    return "\n".join(kept[-lines:])


def start_sweep(runs_dir: Path, args: list, workers: int, log: Path) -> subprocess.Popen:
    """In its own session, so that the whole process group (parent and workers) can be signalled at once."""
    return subprocess.Popen(command(runs_dir, args, workers), cwd=REPO, env=sweep_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))


def config_of(args: list) -> Sweep:
    profile = args[args.index("--profile") + 1]
    return config.load_sweep(profile, [a for a in args if "=" in a and not a.startswith("-")])


# --- Reading the stores back -------------------------------------------------------------------------------------
@dataclass
class Store:
    runs_dir: Path
    cfg: Sweep
    client: object
    experiment: object
    runs: list
    storage: object

    def by_role(self, role: str, status: str | None = "FINISHED", arm: str | None = "tpe") -> list:
        """Runs of a role; trial runs of one arm (the TPE arm unless told: the random arm has its own checks)."""
        return [r for r in self.runs if r.data.tags.get("role") == role
                and (status is None or r.info.status == status)
                and (role != "trial" or arm is None or r.data.tags.get("arm") == arm)]

    def cell_run(self, cell) -> object:
        """The cell's run; orphans (marked FAILED) do not count."""
        everything = [r for r in self.by_role("cell", None) if cell_key(r) == cell]
        found = [r for r in everything if r.info.status != "FAILED"]
        assert len(found) == 1, \
            f"{cell}: expected one cell run, found {[(r.info.run_id, r.info.status) for r in everything]}"
        return found[0]

    def children(self, run, role: str, status: str | None = "FINISHED", arm: str | None = "tpe") -> list:
        return [r for r in self.by_role(role, status, arm) if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]

    def study(self, cell, arm: str = "tpe", run: int = 0):
        import optuna
        from study.sweep import tuning

        return optuna.load_study(study_name=tuning.study_name(self.cfg.name, cell, arm, run), storage=self.storage)


def cell_key(run) -> tuple:
    t = run.data.tags
    return (t.get("dataset"), t.get("optimizer"), t.get("batch_size"))


def journal(runs_dir: Path, name: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = runs_dir / "optuna" / f"{name}.journal"
    assert path.is_file(), f"no Optuna journal at {path}"
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def read_store(runs_dir: Path, cfg: Sweep) -> Store:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    assert (runs_dir / "mlflow.db").is_file(), f"no MLflow store in {runs_dir}"
    client = MlflowClient(tracking_uri=f"sqlite:///{runs_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(cfg.name)
    assert experiment is not None, f"no MLflow experiment named {cfg.name!r}"
    runs, token = [], None
    while True:
        page = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    return Store(runs_dir, cfg, client, experiment, runs, journal(runs_dir, cfg.name))


def finished_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def check_counts(store: Store) -> None:
    """Exact counts, whatever happened on the way: per cell one cell run, `trials` finished trials in Optuna per
    tuning run and arm, and as many FINISHED trial runs in MLflow for run 0's TPE search only (the same trial
    numbers, none twice; the random arm and the repeat runs are no MLflow runs), `seeds` evaluations per track,
    tuning run and budget served (each budget once per run and seed);
    nothing left RUNNING. Orphans may exist only as FAILED runs. Also the cheap schema checks (the cell's tags and
    the optimizer's params on every child run), so that every sweep of this file checks its optimizers."""
    cfg = store.cfg
    running = [(r.info.run_name, r.info.run_id, r.data.tags.get("role")) for r in store.runs
               if r.info.status == "RUNNING"]
    assert not running, f"runs left RUNNING (orphans must be marked FAILED): {running}"
    cells = {cell_key(r) for r in store.by_role("cell", None)}
    assert cells == set(cfg.cells()), f"cell runs {sorted(cells)} != grid {cfg.cells()}"
    for cell in cfg.cells():
        parent = store.cell_run(cell)
        assert parent.info.status == "FINISHED", (cell, parent.info.status)
        trials = cfg.profile.trials
        tunings = [(r, "tpe") for r in range(cfg.profile.tuning_runs)] + ([(0, "random")] if cfg.profile.random_arm
                                                                          else [])
        for run, arm in tunings:
            numbers = sorted(t.number for t in finished_trials(store.study(cell, arm, run)))
            assert len(numbers) == trials, f"{cell} {run} {arm}: {len(numbers)} finished trials, want {trials}"
            if (run, arm) != (0, "tpe"):
                continue
            trial_runs = store.children(parent, "trial", arm=arm)
            recorded = sorted(int(r.data.tags["trial_number"]) for r in trial_runs)
            assert len(trial_runs) == trials, f"{cell} {arm}: {len(trial_runs)} FINISHED trial runs"
            assert recorded == numbers, f"{cell} {arm}: MLflow trial numbers {recorded} != Optuna's {numbers}"
            assert all("test_loss" in r.data.metrics for r in trial_runs), cell  # recorded, never chosen on
        assert not store.children(parent, "trial", arm="random"), f"{cell}: random-arm trials in MLflow"
        assert {r.data.tags.get("tuning_run") for r in store.children(parent, "trial", arm=None)} == {"0"}, cell
        trial_runs = store.children(parent, "trial", arm=None)
        names = set(optim.OPTIMIZERS[cell[1]].defaults)
        for run in trial_runs + store.children(parent, "eval"):
            assert cell_key(run) == cell, (run.info.run_name, run.data.tags)
            assert set(run.data.params) == names, (run.info.run_name, run.data.params)
        assert {r.data.tags["state"] for r in trial_runs} <= STATES - {"FAIL"}
        runs_of = {"tuned": range(cfg.profile.tuning_runs), "default": [-1]}
        for track in ("tuned", "default"):
            for run in runs_of[track]:
                evals = [r for r in store.children(parent, "eval") if r.data.tags.get("track") == track
                         and r.data.tags.get("tuning_run") == str(run)]
                for budget in ("epochs", "updates", "seconds"):
                    seeds = sorted(int(r.data.tags["seed"]) for r in evals
                                   if budget in r.data.tags["budget"].split(","))
                    assert seeds == list(cfg.seeds), f"{cell} {track} {run} {budget}: eval seeds {seeds}"
        others = [r for r in store.runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
                  and r.info.status != "FINISHED"]
        assert all(r.info.status == "FAILED" for r in others), [(r.info.run_name, r.info.status) for r in others]
    trial_parents = {r.data.tags.get("mlflow.parentRunId") for r in store.by_role("trial", None)}
    cell_ids = {r.info.run_id for r in store.by_role("cell", None)}
    assert trial_parents <= cell_ids, "a trial run whose parent is not a cell run"


def initial_val_loss(cfg: Sweep, dataset: str) -> float:
    """The penalty of a diverged tuning trial: the validation loss of the untrained network (tuning seed)."""
    p = cfg.profile
    split = data.load(dataset, p.tuning_seed, p.split.val, p.split.test)
    net = nn.MLP((split.n_features, *p.network.hidden, split.n_outputs), p.network.activation, split.task)
    return float(net.evaluate(net.init(p.tuning_seed, 1), split.X_val, split.Y_val)[0][0])


def n_train(cfg: Sweep, dataset: str, seed: int) -> int:
    return data.load(dataset, seed, cfg.profile.split.val, cfg.profile.split.test).X_train.shape[0]


def history(store: Store, run, key: str) -> tuple[list, list]:
    h = sorted(store.client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
    return [m.step for m in h], [m.value for m in h]


# --- The shared smoke sweeps -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The same smoke sweep from scratch in two directories, at the same time: with two workers and with one."""
    base = tmp_path_factory.mktemp("smoke")
    dirs = {"a": base / "a", "b": base / "b"}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {"a": pool.submit(run_sweep, dirs["a"], SMOKE, 2), "b": pool.submit(run_sweep, dirs["b"], SMOKE, 1)}
        procs = {k: f.result() for k, f in futures.items()}
    for k, proc in procs.items():
        assert proc.returncode == 0, f"sweep {k} failed (exit {proc.returncode}):\n{tail(proc.stderr)}"
    cfg = config_of(SMOKE)
    return {"cfg": cfg, "dirs": dirs, "procs": procs, "a": read_store(dirs["a"], cfg),
            "b": read_store(dirs["b"], cfg)}


def test_smoke_sweep_ends_with_a_summary_of_where_the_stores_are(smoke):
    err = smoke["procs"]["a"].stderr
    cfg = smoke["cfg"]
    assert f"{len(cfg.cells())}/{len(cfg.cells())} cells" in err, tail(err)
    assert str(smoke["dirs"]["a"] / "mlflow.db") in err and "journal" in err, tail(err)
    # the bar counts each cell once, though two workers race for the same pending cells
    shown = [int(n) for n in re.findall(rf"cells (\d+)/{len(cfg.cells())}", err)]
    assert shown and max(shown) == len(cfg.cells()), sorted(set(shown))[-5:]


def test_counts_are_exact_in_both_sweeps(smoke):
    check_counts(smoke["a"])
    check_counts(smoke["b"])


def test_experiment_cells_and_their_nested_runs(smoke):
    store, cfg = smoke["a"], smoke["cfg"]
    assert store.experiment.name == cfg.name == "smoke"
    for cell in cfg.cells():
        dataset, optimizer, batch = cell
        parent = store.cell_run(cell)
        assert parent.data.tags["role"] == "cell"
        assert parent.info.run_name == f"{dataset}/{optimizer}/{batch}"
        for run in store.children(parent, "trial") + store.children(parent, "eval"):
            assert cell_key(run) == cell, (run.info.run_name, run.data.tags)
        for run in store.children(parent, "trial"):
            tags = run.data.tags
            assert tags["state"] in STATES - {"FAIL"}, tags["state"]
            assert re.fullmatch(r"\d+", tags["trial_number"])
            assert run.info.run_name == f"trial-{tags['trial_number']}"
        for run in store.children(parent, "eval"):
            assert run.data.tags["track"] in ("tuned", "default")
            assert re.fullmatch(r"\d+", run.data.tags["seed"])


def test_trial_states_match_optuna(smoke):
    store, cfg = smoke["a"], smoke["cfg"]
    seen = Counter()
    for cell in cfg.cells():
        by_number = {t.number: t for t in finished_trials(store.study(cell))}
        for run in store.children(store.cell_run(cell), "trial"):
            t = by_number[int(run.data.tags["trial_number"])]
            state = run.data.tags["state"]
            seen[state] += 1
            if state == "PRUNED":
                assert t.state.name == "PRUNED"
            else:  # COMPLETE, or DIVERGED: a completed trial with a finite penalty
                assert t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value), (cell, t)
            assert run.data.metrics["diverged"] == float(state == "DIVERGED")
    assert seen["COMPLETE"] > 0, seen


def test_params_by_their_lecture_names(smoke):
    store, cfg = smoke["a"], smoke["cfg"]
    for cell in cfg.cells():
        optimizer = cell[1]
        names = set(optim.OPTIMIZERS[optimizer].defaults)
        parent = store.cell_run(cell)
        for run in store.children(parent, "trial") + store.children(parent, "eval"):
            assert set(run.data.params) == names, (run.info.run_name, run.data.params)
            space = cfg.spaces[optimizer]
            for name, value in run.data.params.items():
                value = float(value)
                r = space[name]
                if run.data.tags.get("track") == "default":
                    assert value == cfg.defaults(optimizer)[name]
                elif r.fixed is not None:
                    assert value == r.fixed
                elif run.data.tags["role"] == "trial":
                    x = 1 - value if r.one_minus else value
                    assert r.low * (1 - 1e-9) <= x <= r.high * (1 + 1e-9), (name, value, r)


def test_each_budget_is_served_by_the_trial_best_on_validation_at_its_cap(smoke):
    """At the epochs budget run 0's choice is the trial of either arm with the lowest final validation loss (the
    loss at E_d epochs; diverged trials have none), and the tuned evaluations of run 0 serving it run with its
    hyperparameters; every run and budget has its choice in the cell's ledger."""
    from study.sweep.tuning import ledger

    store, cfg = smoke["a"], smoke["cfg"]
    for cell in cfg.cells():
        parent = store.cell_run(cell)
        record = ledger.read(store.study(cell).user_attrs)
        assert set(record.choices) == {f"{r}:{b}" for r in range(cfg.profile.tuning_runs)
                                       for b in ("epochs", "updates", "seconds")}
        complete = [(t.value, arm != "tpe", t.number, arm, t.params)
                    for arm in ("tpe", "random") for t in finished_trials(store.study(cell, arm))
                    if ledger.trial_state(t) == "COMPLETE"]
        if not complete:
            continue
        value, _, number, arm, _ = min(complete)
        chosen = record.choices["0:epochs"]
        assert (chosen["arm"], chosen["number"]) == (arm, number), (cell, chosen, arm, number)
        assert chosen["value"] == pytest.approx(value, rel=1e-12)
        tuned = [r for r in store.children(parent, "eval") if r.data.tags["track"] == "tuned"
                 and r.data.tags["tuning_run"] == "0" and "epochs" in r.data.tags["budget"].split(",")]
        assert len(tuned) == len(cfg.seeds)
        for run in tuned:
            assert {k: float(v) for k, v in run.data.params.items()} == pytest.approx(chosen["hyper"]), cell


def test_metric_histories_have_one_value_per_epoch(smoke):
    """Curves where a reviewer looks at them: a trial's validation loss (what its pruning acted on), an evaluation's
    losses, accuracy and gradient norm. updates and seconds are final values (per epoch they are straight lines)."""
    store, cfg = smoke["a"], smoke["cfg"]
    for cell in cfg.cells():
        dataset, _, batch = cell
        classification = data.load(dataset, 0).task == "classification"
        epochs = cfg.epochs_of(dataset)
        parent = store.cell_run(cell)
        runs = [r for r in store.children(parent, "trial") if r.data.tags["state"] == "COMPLETE"]
        runs += [r for r in store.children(parent, "eval") if r.data.metrics["diverged"] == 0]
        assert runs
        for run in runs:
            role = run.data.tags["role"]
            keys = TRIAL_CURVES if role == "trial" else EVAL_CURVES + (("val_accuracy",) if classification else ())
            for key in keys:
                steps, values = history(store, run, key)
                assert steps == list(range(1, epochs + 1)), (run.info.run_name, key, steps)
                assert all(math.isfinite(v) for v in values), (run.info.run_name, key)
            if role == "trial":  # the rest of a trial is its final values
                for key in ("train_loss",) + (("val_accuracy",) if classification else ()):
                    assert len(history(store, run, key)[0]) == 1, (run.info.run_name, key)
            if not classification:
                assert "val_accuracy" not in run.data.metrics and "test_accuracy" not in run.data.metrics
            seed = cfg.profile.tuning_seed if role == "trial" else int(run.data.tags["seed"])
            n = n_train(cfg, dataset, seed)
            per_epoch = 1 if batch == "full" else math.ceil(n / min(int(batch), n))
            for key in ("updates", "seconds"):
                steps, values = history(store, run, key)
                assert steps == [epochs], (run.info.run_name, key, steps)
            assert run.data.metrics["updates"] == float(epochs * per_epoch), (run.info.run_name, per_epoch)
            assert run.data.metrics["seconds"] > 0
        assert parent.data.params["updates_per_epoch"] == str(per_epoch)


def test_pruned_and_diverged_histories_stop_early(smoke):
    store, cfg = smoke["a"], smoke["cfg"]
    for run in store.by_role("trial"):
        if run.data.tags["state"] in ("PRUNED", "DIVERGED"):
            steps, _ = history(store, run, "val_loss")
            epochs = cfg.epochs_of(run.data.tags["dataset"])
            assert steps == list(range(1, len(steps) + 1)) and len(steps) <= epochs


def test_final_metrics_of_evaluations(smoke):
    store = smoke["a"]
    for run in store.by_role("eval"):
        m = run.data.metrics
        classification = data.load(run.data.tags["dataset"], 0).task == "classification"
        assert math.isfinite(m["test_loss"]) and m["test_loss"] >= 0
        assert m["diverged"] in (0.0, 1.0)
        if classification:
            assert 0 <= m["test_accuracy"] <= 1
        else:
            assert "test_accuracy" not in m


def test_diverged_trials_complete_with_the_initial_validation_loss(smoke):
    """Whatever diverged in the smoke sweep (momentum with eta up to 10 does on diabetes) is a recorded outcome."""
    store, cfg = smoke["a"], smoke["cfg"]
    diverged = 0
    for cell in cfg.cells():
        penalty = initial_val_loss(cfg, cell[0])
        by_number = {t.number: t for t in finished_trials(store.study(cell))}
        for run in store.children(store.cell_run(cell), "trial"):
            if run.data.tags["state"] == "DIVERGED":
                diverged += 1
                t = by_number[int(run.data.tags["trial_number"])]
                assert t.state.name == "COMPLETE" and math.isfinite(t.value)
                if cfg.population_of(cell[2]) == 1:
                    assert t.value == pytest.approx(penalty, rel=1e-12), (cell, t.value, penalty)
    print(f"{diverged} diverged trials in the smoke sweep")


def test_cell_artifacts_and_dataset_input(smoke, tmp_path):
    store, cfg = smoke["a"], smoke["cfg"]
    for cell in cfg.cells():
        parent = store.cell_run(cell)
        names = {a.path for a in store.client.list_artifacts(parent.info.run_id)}
        pngs = [n for n in names if n.endswith(".png")]
        assert any("curve" in n for n in pngs), names
        assert any("history" in n for n in pngs), names
        assert any("importance" in n for n in pngs), names
        configs = [n for n in names if n.endswith((".yaml", ".yml"))]
        assert configs, names
        out = tmp_path / parent.info.run_id
        for name in pngs + configs:
            local = Path(store.client.download_artifacts(parent.info.run_id, name, str(out)))
            assert local.stat().st_size > 0, name
            if name.endswith(".png"):
                assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
            else:
                resolved = yaml.safe_load(local.read_text())
                assert resolved["name"] == cfg.name and list(resolved["datasets"]) == list(cfg.profile.datasets)
                assert resolved["trials"] == cfg.profile.trials
        inputs = parent.inputs.dataset_inputs
        assert [i.dataset.name for i in inputs] == [cell[0]], inputs


def test_provenance_tags_on_cell_runs_and_not_repeated_on_their_children(smoke):
    store = smoke["a"]
    versions = {p: metadata.version(p) for p in ("numpy", "optuna", "mlflow", "scikit-learn")}
    overrides = [a for a in SMOKE if "=" in a]
    commits = set()
    for run in store.by_role("cell"):
        tags = run.data.tags
        for package, version in versions.items():
            assert any(package in k and v == version for k, v in tags.items()), (run.info.run_name, package)
        shas = {v for k, v in tags.items() if "commit" in k}
        assert shas and all(re.fullmatch(r"[0-9a-f]{40}", s) for s in shas), (run.info.run_name, shas)
        commits |= shas
        assert any("pipelines" in v and "sweep" in v and all(o in v for o in overrides) for v in tags.values()), \
            (run.info.run_name, "no command line tag")
    for sha in commits:  # a commit of this repository (the lead may have committed since; any commit will do)
        assert subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=REPO).returncode == 0, sha
    for run in store.by_role("trial") + store.by_role("eval"):  # children are traced through their cell
        tags = run.data.tags
        assert not [k for k in tags if k.startswith("version.") or "commit" in k or k == "command"], tags
        assert {"role", "dataset", "optimizer", "batch_size"} <= set(tags), tags


def test_cell_runs_span_the_cells_work_in_the_mlflow_table(smoke):
    """A cell run starts when its work began and ends when it ended (issue 20: it used to start when its records were
    written, so MLflow's Duration said a cell took a second): Optuna's own clock of its trials lies inside it."""
    from study.sweep import tuning

    store, cfg = smoke["a"], smoke["cfg"]
    for cell in cfg.cells():
        parent = store.cell_run(cell)
        trials = [t for run, arm in tuning.tunings(cfg) for t in store.study(cell, arm, run).trials
                  if t.datetime_start is not None and t.datetime_complete is not None]
        first = min(t.datetime_start.timestamp() for t in trials) * 1000
        last = max(t.datetime_complete.timestamp() for t in trials) * 1000
        assert parent.info.start_time <= first + 1, (cell, parent.info.start_time, first)
        assert parent.info.end_time >= last - 1, (cell, parent.info.end_time, last)


def test_progress_sent_to_a_file_is_plain_lines(smoke):
    """stderr is a pipe here, as a log file would be: no carriage returns or escape codes, the progress a line at a
    time (one every 30 s and one at the end), the last saying every cell is done."""
    err = smoke["procs"]["a"].stderr
    assert "\r" not in err and "\x1b" not in err, repr(err[:300])
    lines = [line for line in err.splitlines() if line.startswith("progress: ")]
    cells = len(smoke["cfg"].cells())
    assert lines and f"cells {cells}/{cells}," in lines[-1], lines[-3:]


def test_cell_runs_carry_sortable_summaries(smoke):
    """best_val_loss = the best non-diverged trial's value (run 0's TPE search); tuned/default test loss and accuracy
    = means over the evaluations at the epochs budget (every tuning run's, every seed); diverged_share over the
    tuning trials of every run and arm; seconds_per_epoch measured before tuning."""
    from study.sweep.tuning import ledger

    store, cfg = smoke["a"], smoke["cfg"]
    for cell in cfg.cells():
        parent = store.cell_run(cell)
        m = parent.data.metrics
        classification = data.load(cell[0], 0).task == "classification"
        evals = store.children(parent, "eval")
        for track in ("tuned", "default"):
            runs = [r for r in evals if r.data.tags["track"] == track and "epochs" in r.data.tags["budget"].split(",")]
            mean = sum(r.data.metrics["test_loss"] for r in runs) / len(runs)
            assert m[f"{track}_test_loss"] == pytest.approx(mean, rel=1e-12), (cell, track)
            if classification:
                mean = sum(r.data.metrics["test_accuracy"] for r in runs) / len(runs)
                assert m[f"{track}_test_accuracy"] == pytest.approx(mean, rel=1e-12), (cell, track)
            else:
                assert f"{track}_test_accuracy" not in m
        states = [ledger.trial_state(t) for run, arm in ([(r, "tpe") for r in range(cfg.profile.tuning_runs)]
                                                          + [(0, "random")])
                  for t in finished_trials(store.study(cell, arm, run))]
        assert m["diverged_share"] == states.count("DIVERGED") / len(states)
        complete = [t.value for t in finished_trials(store.study(cell))
                    if t.state.name == "COMPLETE" and t.user_attrs.get("state") != "DIVERGED"]
        if complete:
            assert m["best_val_loss"] == min(complete)
        assert 0 < m["seconds_per_epoch"] < 10


def test_curves_parquet_holds_every_value_of_every_run(smoke, tmp_path):
    """The cell run's curves.parquet: one row per run and checkpoint, every trial (of every tuning run and arm:
    run id "" for those that are no MLflow runs) and evaluation, equal at epoch ends (float64, to the bit) to what
    MLflow holds per epoch, and the epoch column the updates over the updates per epoch."""
    import pandas as pd

    store, cfg = smoke["a"], smoke["cfg"]
    for cell in cfg.cells():
        parent = store.cell_run(cell)
        path = store.client.download_artifacts(parent.info.run_id, "curves.parquet", str(tmp_path / parent.info.run_id))
        table = pd.read_parquet(path)
        per_epoch = int(parent.data.params["updates_per_epoch"])
        trials, evals = store.children(parent, "trial", arm=None), store.children(parent, "eval")
        assert set(table["run_id"]) - {""} == {r.info.run_id for r in trials + evals}
        outside = table[table["run_id"] == ""]
        assert (outside["role"] == "trial").all() and set(zip(outside["tuning_run"], outside["arm"])) == \
            {(r, "tpe") for r in range(1, cfg.profile.tuning_runs)} | {(0, "random")}
        assert len(pd.read_parquet(store.client.download_artifacts(
            parent.info.run_id, "trials.parquet", str(tmp_path / parent.info.run_id)))) == \
            cfg.profile.trials * (cfg.profile.tuning_runs + 1)
        for run in trials + evals:
            everything = table[table["run_id"] == run.info.run_id].sort_values("updates")
            assert np.allclose(everything["epoch"], everything["updates"] / per_epoch)
            rows = everything[everything["updates"] % per_epoch == 0]  # the epoch ends
            keys = TRIAL_CURVES if run.data.tags["role"] == "trial" else EVAL_CURVES
            for key in keys:
                steps, values = history(store, run, key)
                finite = rows[rows["epoch"].isin(steps)]
                assert finite["epoch"].tolist() == steps, (run.info.run_name, key)
                # MLflow keeps an overflow as the largest float; the parquet keeps it as inf
                kept = np.clip(finite[key].to_numpy(), -sys.float_info.max, sys.float_info.max).tolist()
                assert kept == values, (run.info.run_name, key)
            assert rows["updates"].tolist() == [e * per_epoch for e in rows["epoch"]], run.info.run_name
            assert rows["updates"].iloc[-1] == run.data.metrics["updates"]
            assert rows["seconds"].iloc[-1] == run.data.metrics["seconds"]
            if run.data.tags["role"] == "trial":
                assert rows["trial_number"].unique().tolist() == [int(run.data.tags["trial_number"])]
            else:
                assert rows["track"].unique().tolist() == [run.data.tags["track"]]
                assert rows["seed"].unique().tolist() == [int(run.data.tags["seed"])]


def test_experiment_description_says_how_to_reach_trials_and_evaluations(smoke):
    note = smoke["a"].experiment.tags.get("mlflow.note.content", "")
    for needed in ("tags.role = 'cell'", "tags.role = 'eval'", "tags.role = 'trial'", "tuned_test_loss",
                   "curves.parquet"):
        assert needed in note, needed


def test_summary_links_to_the_cell_runs_table(smoke):
    err, experiment = smoke["procs"]["a"].stderr, smoke["a"].experiment.experiment_id
    url = f"http://127.0.0.1:5000/#/experiments/{experiment}/runs?searchFilter=tags.role%20%3D%20%27cell%27"
    assert url in err, tail(err)


def test_two_sweeps_from_scratch_give_identical_numbers(smoke):
    """Cell results depend on the config only: not on the run, the directory or the number of workers."""
    cfg = smoke["cfg"]

    def numbers(store: Store) -> dict:
        out = {}
        for cell in cfg.cells():
            for t in store.study(cell).get_trials(deepcopy=False):
                out[(cell, "optuna", t.number)] = (t.state.name, t.value, t.params,
                                                   t.user_attrs.get("state"), sorted(t.intermediate_values.items()))
            parent = store.cell_run(cell)
            for run in store.children(parent, "trial") + store.children(parent, "eval"):
                tags = run.data.tags
                # the wall-time budget's cap is each sweep's measured timing: its choices are left out
                budgets = tuple(b for b in tags.get("budget", "").split(",") if b and b != "seconds")
                if tags["role"] == "eval" and not budgets:
                    continue
                key = (cell, tags["role"], tags.get("trial_number"), tags.get("track"), tags.get("seed"),
                       tags.get("tuning_run"), budgets)
                assert key not in out, key
                out[key] = ({k: v for k, v in run.data.metrics.items() if k != "seconds"}, run.data.params,
                            tags.get("state"))
        return out

    a, b = numbers(smoke["a"]), numbers(smoke["b"])
    assert a.keys() == b.keys()
    different = [k for k in a if a[k] != b[k]]
    assert not different, f"{len(different)} records differ, e.g. {different[0]}: {a[different[0]]} != " \
                          f"{b[different[0]]}"
    test_losses = [v[0]["test_loss"] for k, v in a.items() if k[1] == "eval"]
    assert len(test_losses) >= (1 + cfg.profile.tuning_runs) * len(cfg.seeds) * len(cfg.cells())


def test_a_second_run_finds_everything_done(smoke):
    store, cfg = smoke["a"], smoke["cfg"]
    before_runs = {r.info.run_id for r in store.runs}
    before_trials = {cell: len(store.study(cell).get_trials(deepcopy=False)) for cell in cfg.cells()}
    proc = run_sweep(smoke["dirs"]["a"], SMOKE, 2, timeout=120)
    assert proc.returncode == 0, tail(proc.stderr)
    assert "done" in proc.stderr, tail(proc.stderr)
    again = read_store(smoke["dirs"]["a"], cfg)
    assert {r.info.run_id for r in again.runs} == before_runs, "new MLflow runs on a finished sweep"
    assert {cell: len(again.study(cell).get_trials(deepcopy=False)) for cell in cfg.cells()} == before_trials


def test_make_sweeps_report_is_built_when_missing_and_not_rebuilt_on_a_finished_sweep(smoke, tmp_path):
    """`make sweep` passes --report: a finished sweep with no report gets one; a second call finds both done and
    leaves the report alone (`make report` rebuilds on demand). Runs in its own directory, so reports/ lands there."""
    runs_dir, cfg = smoke["dirs"]["b"], smoke["cfg"]
    html = tmp_path / "reports" / cfg.name / "report.html"
    first = subprocess.run([*command(runs_dir, SMOKE, 1), "--report"], cwd=tmp_path, env=sweep_env(),
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, tail(first.stderr + first.stdout)
    assert html.exists() and "<img" in html.read_text(), tail(first.stderr + first.stdout)
    built = html.stat().st_mtime_ns
    second = subprocess.run([*command(runs_dir, SMOKE, 1), "--report"], cwd=tmp_path, env=sweep_env(),
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, tail(second.stderr)
    assert "nothing to run" in second.stderr and "built earlier" in second.stderr, tail(second.stderr)
    assert html.stat().st_mtime_ns == built


# --- Divergence, in process ----------------------------------------------------------------------------------------
def test_a_cell_where_every_trial_diverges_is_recorded_not_crashed(tmp_path):
    """gd with eta in 1e3..1e4 on diabetes: every trial blows up. Each is a COMPLETE Optuna trial whose value is the
    untrained network's validation loss (finite), tagged state=DIVERGED in MLflow; the cell still finishes."""
    from study.sweep import cell as cell_mod, sweep, tuning
    from study.sweep.tuning import ledger

    cfg = config.load_sweep("smoke", ["name=diverge", "datasets=diabetes", "optimizers=gd", "batch_sizes=full",
                                      "trials=3", "epochs=5", "seeds=1"])
    cfg = cfg.model_copy(update={"spaces": {"gd": {"eta": RangeSpec(low=1e3, high=1e4)}}})
    ctx = sweep.new_context(cfg, tmp_path)
    (cell,) = cfg.cells()
    claim = tuning.Claim(ctx.locks, tuning.study_name(cfg.name, cell), ctx.worker, cfg.profile.lease_seconds)
    assert claim.acquire()
    studies = cell_mod.open_studies(ctx, cell)
    cell_mod.run_cell(ctx, cell, claim, studies, ledger.Ledger(studies[(0, "tpe")]))
    ctx.backlog.drain()  # the cell's MLflow run is finished, and its claim let go
    assert claim.handle is None

    store = read_store(tmp_path, cfg)
    penalty = initial_val_loss(cfg, "diabetes")
    assert math.isfinite(penalty)
    trials = finished_trials(store.study(cell))
    assert len(trials) == cfg.profile.trials
    for t in trials:
        assert t.state.name == "COMPLETE" and t.value == pytest.approx(penalty, rel=1e-12), (t.number, t.value)
        assert t.params["eta"] >= 1e3
    runs = store.children(store.cell_run(cell), "trial")
    assert sorted(r.data.tags["state"] for r in runs) == ["DIVERGED"] * cfg.profile.trials
    assert all(r.data.metrics["diverged"] == 1.0 for r in runs)
    check_counts(store)


# --- Resume after SIGKILL, and SIGINT ------------------------------------------------------------------------------
def total_trials(cfg) -> int:
    """Every tuning trial of a sweep: TPE's and, when it runs, the random-search arm's."""
    return len(cfg.cells()) * cfg.profile.trials * (cfg.profile.tuning_runs + (1 if cfg.profile.random_arm else 0))


def progress(storage, cfg) -> tuple[int, int]:
    """(finished tuning trials, RUNNING tuning trials) over the sweep's cell studies of every arm, read from the
    journal."""
    import optuna
    from study.sweep import tuning

    names = {tuning.study_name(cfg.name, c, arm, run) for c in cfg.cells() for run, arm in tuning.tunings(cfg)}
    done = running = 0
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if s.study_name in names:
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
            done += states["COMPLETE"] + states["PRUNED"]
            running += states["RUNNING"]
    return done, running


def wait_until(proc, runs_dir: Path, cfg, condition, timeout: float = 300) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    path = runs_dir / "optuna" / f"{cfg.name}.journal"
    storage = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before it could be interrupted; make it larger"
        if storage is None and path.is_file():
            storage = journal(runs_dir, cfg.name)
        if storage is not None:
            try:
                state = progress(storage, cfg)
            except ValueError:  # a line being written as we read: look again
                state = None
            if state and condition(*state):
                return state
        time.sleep(0.3)  # not faster: reading the journal costs CPU that the sweep's workers need
    raise AssertionError("the sweep did not get far enough in time")


KILL = ["--profile", "smoke", "name=killed", "datasets=iris", "optimizers=gd,nag,rmsprop,adagrad", "batch_sizes=32",
        "trials=6", "epochs=30", "seeds=2"]


def test_resume_after_sigkill_finishes_every_cell_with_exact_counts(tmp_path):
    """kill -9 of the whole sweep (parent and workers) half-way, then the same command again: every cell finishes,
    each with exactly `trials` finished trials in Optuna and as many FINISHED trial runs in MLflow (the killed
    trials FAILED and their parameters retried, orphaned runs marked FAILED and not counted)."""
    import optuna
    from study.sweep import tuning

    cfg = config_of(KILL)
    total = total_trials(cfg)
    proc = start_sweep(tmp_path, KILL, 2, tmp_path / "first.log")
    try:
        # mid-trial if we can catch one RUNNING (trials take milliseconds), else half-way anyway
        done, running = wait_until(proc, tmp_path, cfg, lambda done, running: (done >= total // 3 and running > 0)
                                   or done >= total // 2)
        os.killpg(proc.pid, signal.SIGKILL)  # parent and workers: nobody gets to clean up
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    storage = journal(tmp_path, cfg.name)
    done_at_kill, running_at_kill = progress(storage, cfg)
    left = sorted(p.name for p in (tmp_path / "optuna").iterdir())
    assert done_at_kill < total, "the sweep was not interrupted half-way"
    dead = {}
    for cell in cfg.cells():
        try:
            study = optuna.load_study(study_name=tuning.study_name(cfg.name, cell), storage=storage)
        except KeyError:
            continue
        dead[cell] = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]

    proc2 = run_sweep(tmp_path, KILL, 2, timeout=600)
    assert proc2.returncode == 0, tail(proc2.stderr)
    store = read_store(tmp_path, cfg)
    check_counts(store)
    for cell, trials in dead.items():  # each killed trial failed, its parameters tried again
        study = store.study(cell)
        after = {t.number: t for t in study.get_trials(deepcopy=False)}
        for t in trials:
            assert after[t.number].state.name == "FAIL", (cell, t.number, after[t.number].state)
            if t.params:  # (a trial killed between two suggestions has only the first: the retry fills in the rest)
                retried = [u for u in after.values() if u.user_attrs.get("retry_of") == t.number]
                assert retried, (cell, t.number, "parameters not retried")
                assert {k: retried[0].params.get(k) for k in t.params} == t.params, (cell, t.number)
    print(f"killed with {done_at_kill}/{total} trials done and {running_at_kill} running; "
          f"rerun took {proc2.seconds:.1f} s; left in optuna/: {left}\n{tail(proc2.stderr, 12)}")


SIGINT = ["--profile", "smoke", "name=interrupted", "datasets=moons", "optimizers=momentum,adam",
          "batch_sizes=full,32", "trials=4", "epochs=10", "seeds=2"]


def test_sigint_stops_cleanly_says_how_to_resume_and_a_rerun_completes(tmp_path):
    """Ctrl-C: a non-zero exit whose last line says how to resume, no run or trial left RUNNING; the same command
    again completes with exact counts."""
    cfg = config_of(SIGINT)
    total = total_trials(cfg)
    log = tmp_path / "first.log"
    started = time.monotonic()
    proc = start_sweep(tmp_path, SIGINT, 2, log)
    try:
        # soon after the first trials: however loaded the machine, most of the sweep is still ahead
        wait_until(proc, tmp_path, cfg, lambda done, running: done >= 2)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group gets it
        stopped = time.monotonic()
        proc.wait(timeout=120)
        exited = time.monotonic()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    err = log.read_text()
    assert proc.returncode != 0, tail(err)
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert "resume" in last.lower() or "again" in last.lower(), tail(err)
    assert "Traceback" not in err, tail(err)
    store = read_store(tmp_path, cfg)
    running = [(r.info.run_name, cell_key(r)) for r in store.runs if r.info.status == "RUNNING"]
    assert not running, f"runs left RUNNING after SIGINT (should be KILLED or FINISHED): {running}"
    done, still_running = progress(store.storage, cfg)
    from study.sweep.tuning import ledger

    def cell_done(cell) -> bool:
        try:
            return ledger.read(store.study(cell).user_attrs).done
        except KeyError:  # never started
            return False

    cells_done = sum(map(cell_done, cfg.cells()))
    # (the interrupt may land after the last trial, among the evaluations: then cells are left undone)
    assert done < total or cells_done < len(cfg.cells()), "the sweep was not interrupted half-way"
    assert still_running == 0, "trials left RUNNING after SIGINT: the worker should fail its current trial cleanly"

    left = sorted(p.name for p in (tmp_path / "optuna").iterdir())
    proc2 = run_sweep(tmp_path, SIGINT, 2, timeout=600)
    assert proc2.returncode == 0, tail(proc2.stderr)
    check_counts(read_store(tmp_path, cfg))
    print(f"interrupted with {done}/{total} trials done after {stopped - started:.1f} s, exit took "
          f"{exited - stopped:.1f} s; rerun took {proc2.seconds:.1f} s; left in optuna/: {left}")


# --- The sweep's ties, read from its code (no sweep runs) -----------------------------------------------------
def _code(path: Path):
    import ast

    return ast.parse(path.read_text())


def _strings(tree) -> set[str]:
    """Every string constant of a module but its docstrings."""
    import ast

    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings}


SWEEP_CODE = sorted([*(REPO / "study" / "sweep").rglob("*.py"), *(REPO / "study" / "tools").glob("*.py"),
                     *(REPO / "pipelines").glob("*.py")])


def test_the_sweeps_ties_are_typed_and_visible():
    """Optuna and MLflow each behind their door; the backlog handed the cell's functions rather than importing
    them; the cell asking, reporting and telling through the door; no claim given a lambda; the context's parts
    typed; tag keys and environment variables written in study/sweep/names.py only."""
    import ast
    import dataclasses
    import typing

    from study.sweep import context

    for path in [*(REPO / "study").rglob("*.py"), *(REPO / "pipelines").glob("*.py")]:
        imported = {alias.name.split(".")[0] for node in ast.walk(_code(path))
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(_code(path))
                     if isinstance(node, ast.ImportFrom) and node.module}
        where = path.relative_to(REPO).as_posix()
        assert "optuna" not in imported or where.startswith("study/sweep/tuning/"), where
        assert "mlflow" not in imported or where.startswith("study/sweep/tracking/"), where
    backlog = _code(REPO / "study" / "sweep" / "backlog.py")
    assert not [n for n in ast.walk(backlog) if isinstance(n, ast.ImportFrom) and n.module == "study.sweep.cell"]
    cell = _code(REPO / "study" / "sweep" / "cell.py")
    past_the_door = [n.func.attr for n in ast.walk(cell) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Attribute) and n.func.attr in ("ask", "tell", "report", "should_prune")
                     and not (isinstance(n.func.value, ast.Name) and n.func.value.id == "tuning")]
    assert not past_the_door, past_the_door
    for path in SWEEP_CODE:
        lambdas = [n.lineno for n in ast.walk(_code(path)) if isinstance(n, ast.Assign)
                   and isinstance(n.value, ast.Lambda) and any(isinstance(t, ast.Attribute) for t in n.targets)]
        assert not lambdas, (path, lambdas)
    hints = typing.get_type_hints(context.Context)
    for f in dataclasses.fields(context.Context):
        assert hints[f.name] is not object, f.name
    written_once = {"role", "trial_number", "scored_on_test", "tuned_from", "orphaned", "mlflow.parentRunId",
                    "mlflow.note.content", "mlflow.source.git.commit", "OPTUNA_STORAGE", "MLFLOW_TRACKING_URI",
                    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "OPTSTUDY_COMMAND",
                    "OPTSTUDY_MLFLOW_RETRY_SECONDS", "OMP_NUM_THREADS", "tags.role = 'cell'"}
    for path in SWEEP_CODE:
        if path.name != "names.py":
            assert not written_once & _strings(_code(path)), (path, written_once & _strings(_code(path)))
