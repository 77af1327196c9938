"""One cell of the sweep, (dataset, optimizer, batch size): tune, evaluate, record.

Tuning asks Optuna for K trials at once, trains the K networks in one stacked pass, reports each member to its
own trial (a pruned or diverged member stops, the others go on) and tells K results. Evaluation retrains the best
hyperparameters (tuned track) and the defaults (default track) with every evaluation seed and scores them on the
test split. The Optuna storage records what is done, so resuming a cell redoes only what is missing; MLflow
mirrors it (study.record).
"""
from __future__ import annotations

import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from study import data, nn, record, tracking, train, tuning
from study.config import SweepConfig

CURVES = ("train_loss", "val_loss", "val_accuracy", "updates", "seconds")  # what every run logs per epoch
EVAL_CURVES = CURVES + ("grad_norm",)  # evaluations add the gradient norm: the report's measure of update noise


class Interrupted(Exception):
    """SIGINT / SIGTERM arrived: stop at the end of the current epoch, fail what is running, leave resumable."""


@dataclass
class Context:
    """What a worker needs to run cells: the config, its stores and its identity."""
    cfg: SweepConfig
    storage: object
    mlflow: object
    experiment: str
    worker: str
    progress: Callable[[str, dict], None] = lambda event, info: None
    stop_requested: list = field(default_factory=lambda: [False])
    tracking_down_until: list = field(default_factory=lambda: [0.0])
    seconds: dict = field(default_factory=lambda: {"optuna": 0.0, "mlflow": 0.0})
    network_epochs: list = field(default_factory=lambda: [0])  # epochs trained, summed over networks

    def timed(self, what: str):
        return _Timer(self.seconds, what)


class _Timer:
    def __init__(self, seconds: dict, what: str):
        self.seconds, self.what = seconds, what

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self.what] += time.perf_counter() - self.started


def install_signal_handlers(ctx: Context) -> None:
    def ask_to_stop(signum, frame):
        ctx.stop_requested[0] = True
    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGTERM, ask_to_stop)


def network(cfg: SweepConfig, split: data.Split) -> nn.MLP:
    return nn.MLP((split.n_features, *cfg.hidden, split.n_outputs), cfg.activation, split.task)


def open_studies(ctx: Context, cell: tuple) -> dict:
    arms = ("tpe", "random") if ctx.cfg.random_arm else ("tpe",)
    with ctx.timed("optuna"):
        return {arm: tuning.cell_study(ctx.storage, ctx.cfg, cell, arm) for arm in arms}


def run_cell(ctx: Context, cell: tuple, claim: tuning.Claim) -> None:
    studies = open_studies(ctx, cell)
    mirror = record.Mirror(ctx, cell, studies)
    with ctx.timed("optuna"):
        recovered = len(claim.recovered) + \
            sum(len(tuning.recover_dead_trials(s, ctx.cfg.lease_seconds)) for s in studies.values())
        if recovered:  # kept with the cell, so that every attempt to finish its MLflow run logs the same count
            main = studies["tpe"]
            main.set_user_attr("recovered_trials", main.user_attrs.get("recovered_trials", 0) + recovered)
    if studies["tpe"].user_attrs.get("cell_run_id"):  # resumed or taken over: fail the dead worker's orphans
        mirror.reconcile()
    try:
        for arm, study in studies.items():
            _tune(ctx, cell, study, arm, mirror, claim)
        _evaluate(ctx, cell, studies["tpe"], mirror, claim)
    except Interrupted:
        mirror.interrupted()
        raise
    finish_cell(ctx, cell, studies, mirror)


def _tune(ctx: Context, cell, study, arm: str, mirror: record.Mirror, claim: tuning.Claim) -> None:
    cfg = ctx.cfg
    dataset, optimizer, batch = cell
    split = data.load(dataset, cfg.tuning_seed, cfg.val_fraction, cfg.test_fraction)
    net = network(cfg, split)
    space = cfg.search_spaces[optimizer]
    lease = tuning.TrialLease(ctx.worker, cfg.lease_seconds)
    prunes = arm == "tpe" and cfg.pruner != "none"
    while True:
        if ctx.stop_requested[0]:  # do not ask for trials we would only fail
            raise Interrupted()
        with ctx.timed("optuna"):
            remaining = cfg.trials - len(tuning.finished(study))
            if remaining <= 0:
                return
            trials, hypers = [], []
            for _ in range(min(cfg.population[batch], remaining)):  # ask and suggest in turn: the liar sees each
                trial = study.ask()
                lease.start(trial)
                trials.append(trial)
                hypers.append(tuning.suggest(trial, space))

        def report(epoch, metrics, members):
            if ctx.stop_requested[0]:
                raise Interrupted()
            with ctx.timed("optuna"):
                claim.heartbeat()
                lease.beat([trials[m] for m in members])
                if not prunes:
                    return None
                prune = np.zeros(len(members), bool)
                for j, m in enumerate(members):
                    value = float(metrics["val_loss"][j])
                    if np.isfinite(value):
                        trials[m].report(value, epoch)
                        prune[j] = trials[m].should_prune()
                return prune

        hyper = {name: np.array([h[name] for h in hypers]) for name in hypers[0]}
        try:
            result = train.train(net, split, optimizer, hyper, batch, cfg.epochs[dataset], cfg.tuning_seed,
                                 net.init(cfg.tuning_seed, len(trials)), callbacks=(report,))
        except Interrupted:
            with ctx.timed("optuna"):
                for trial in trials:  # failed cleanly and queued again: the resumed sweep retries them
                    tuning.tell(study, trial, "FAIL", None)
                    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        ctx.network_epochs[0] += int(result.epochs_run.sum())
        for m, trial in enumerate(trials):
            state, value = _trial_outcome(result, m)
            curves = {name: result.history[name][m] for name in CURVES if name in result.history}
            mirror.trial(trial, arm, state, hypers[m], curves, {"diverged": float(result.diverged[m])})
            with ctx.timed("optuna"):
                tuning.tell(study, trial, state, value)
            ctx.progress("trial", {"cell": cell, "state": state, "value": value})


def _trial_outcome(result: train.TrainResult, m: int) -> tuple[str, float | None]:
    if result.diverged[m]:  # a recorded outcome with a finite penalty: no better than not training at all
        return "DIVERGED", float(result.initial_val_loss[m])
    if result.pruned[m]:
        return "PRUNED", None
    return "COMPLETE", float(result.final("val_loss")[m])


def _evaluate(ctx: Context, cell, study, mirror: record.Mirror, claim: tuning.Claim) -> None:
    """Both tracks, every evaluation seed; seed s fixes split, initial weights and data order for both."""
    cfg = ctx.cfg
    dataset, optimizer, batch = cell
    best = tuning.best_trial(study)
    defaults = dict(cfg.defaults[optimizer])
    tracks = {"tuned": tuning.hyper_from_params(best.params, cfg.search_spaces[optimizer]) if best else defaults,
              "default": defaults}
    for seed in cfg.seeds:
        missing = [t for t in tracks if f"eval:{t}:{seed}" not in study.user_attrs]
        if not missing:
            continue
        if ctx.stop_requested[0]:
            raise Interrupted()
        claim.heartbeat()
        split = data.load(dataset, seed, cfg.val_fraction, cfg.test_fraction)
        net = network(cfg, split)
        theta0 = net.init(seed, len(missing))
        hyper = {name: np.array([tracks[t][name] for t in missing]) for name in defaults}
        result = train.train(net, split, optimizer, hyper, batch, cfg.epochs[dataset], seed, theta0)
        ctx.network_epochs[0] += int(result.epochs_run.sum())
        test_loss, test_acc = net.evaluate(result.theta, split.X_test, split.Y_test)
        start_loss, start_acc = net.evaluate(theta0, split.X_test, split.Y_test)
        for m, track in enumerate(missing):
            bad = bool(result.diverged[m])  # a diverged network scores as the untrained one it is no better than
            final = {"test_loss": float(start_loss[m] if bad else test_loss[m]), "diverged": float(bad)}
            if test_acc is not None:
                final["test_accuracy"] = float(start_acc[m] if bad else test_acc[m])
            tags = {"tuned_from": f"trial {best.number}" if best else "defaults (no trial completed)"} \
                if track == "tuned" else {}
            curves = {n: result.history[n][m] for n in EVAL_CURVES if n in result.history}
            mirror.evaluation(track, seed, tracks[track], curves, final, tags)
        ctx.progress("eval", {"cell": cell, "seed": seed})


def finish_cell(ctx: Context, cell, studies: dict, mirror: record.Mirror) -> None:
    """Cell artifacts (learning curves, Optuna's figures, the resolved config, the dataset) and the done mark."""
    cfg, study = ctx.cfg, studies["tpe"]
    with ctx.timed("optuna"):
        study.set_user_attr("importances", tuning.importances(study))
        best = tuning.best_trial(study)
    if study.user_attrs.get("mlflow_pending"):
        mirror.reconcile()
    with tempfile.TemporaryDirectory() as tmp, ctx.timed("mlflow"):  # figures drawn for MLflow count as tracking
        out = Path(tmp)
        files = tuning.plot_history_and_importances(study, out)
        files.append(_plot_eval_curves(ctx, cell, study, mirror, out))
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
        files.append(out / "config.yaml")
        split = data.load(cell[0], cfg.tuning_seed, cfg.val_fraction, cfg.test_fraction)
        dataset_input = {"name": cell[0], "X": split.X_train, "source": data.DATASETS[cell[0]].description,
                         "y": split.Y_train.argmax(axis=1) if split.n_classes else split.Y_train[:, 0]}
        mirror.finish(files, {"best_val_loss": best.value} if best else {}, dataset_input,
                      {"recovered_trials": study.user_attrs.get("recovered_trials", 0)})
    with ctx.timed("optuna"):
        study.set_user_attr("done", True)


def _eval_curves(ctx: Context, study, mirror: record.Mirror) -> dict:
    """(track, seed) -> validation-loss curve: those this process trained, else from the pending payloads or from
    MLflow (a resumed cell's earlier evaluations)."""
    curves, run_ids = dict(mirror.eval_val_loss), {}
    for key, value in study.user_attrs.items():
        if key.startswith("eval:") and isinstance(value, dict):
            _, track, seed = key.split(":")
            if (track, int(seed)) in curves:
                continue
            if "pending" in value:
                curves[(track, int(seed))] = value["pending"]["curves"].get("val_loss", [])
            elif "run_id" in value:
                run_ids[value["run_id"]] = (track, int(seed))
    try:
        for run_id, (_, values) in tracking.metric_histories(ctx.mlflow, run_ids, "val_loss").items():
            curves[run_ids[run_id]] = values
    except tracking.UNAVAILABLE:
        pass
    return curves


def _plot_eval_curves(ctx: Context, cell, study, mirror: record.Mirror, out: Path) -> Path:
    """Validation loss against epoch for both tracks and every seed: the cell's learning curves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    colors = {"tuned": "tab:blue", "default": "tab:orange"}
    for (track, seed), values in sorted(_eval_curves(ctx, study, mirror).items()):
        ax.plot(range(1, len(values) + 1), values, color=colors[track], alpha=0.6, label=track if seed == 0 else None)
    ax.set(xlabel="epoch", ylabel="validation loss", yscale="log", title=" / ".join(map(str, cell)))
    ax.legend()
    fig.subplots_adjust(**tuning.FIGURE_MARGINS)
    path = out / "learning_curves.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
