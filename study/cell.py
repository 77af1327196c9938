"""One cell of the sweep, (dataset, optimizer, batch size): tune, evaluate, record.

Tuning asks Optuna for K trials at once, trains the K networks in one stacked pass, reports each member to its
own trial (a pruned or diverged member stops, the others go on) and tells K results. Evaluation retrains the best
hyperparameters (tuned track) and the defaults (default track) with every evaluation seed and scores them on the
test split. Everything a cell writes is keyed by the cell, so resuming a cell redoes only what is missing.
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

from study import data, nn, tracking, train, tuning
from study.config import SweepConfig

CURVES = ("train_loss", "val_loss", "val_accuracy", "grad_norm", "updates", "seconds")


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
    seconds: dict = field(default_factory=lambda: {"optuna": 0.0, "mlflow": 0.0})


def install_signal_handlers(ctx: Context) -> None:
    def ask_to_stop(signum, frame):
        ctx.stop_requested[0] = True
    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGTERM, ask_to_stop)


def cell_tags(cell) -> dict[str, str]:
    dataset, optimizer, batch = cell
    return {"dataset": dataset, "optimizer": optimizer, "batch_size": str(batch)}


def network(cfg: SweepConfig, split: data.Split) -> nn.MLP:
    return nn.MLP((split.n_features, *cfg.hidden, split.n_outputs), cfg.activation, split.task)


class _Timer:
    def __init__(self, ctx: Context, what: str):
        self.ctx, self.what = ctx, what

    def __enter__(self):
        self.t = time.perf_counter()

    def __exit__(self, *exc):
        self.ctx.seconds[self.what] += time.perf_counter() - self.t


def run_cell(ctx: Context, cell: tuple, claim: tuning.Claim) -> None:
    cfg = ctx.cfg
    with _Timer(ctx, "optuna"):
        studies = {arm: tuning.cell_study(ctx.storage, cfg, cell, arm)
                   for arm in (("tpe", "random") if cfg.random_arm else ("tpe",))}
        main = studies["tpe"]
        recovered = {arm: tuning.recover_dead_trials(s, cfg.lease_seconds) for arm, s in studies.items()}
        cell_run = main.user_attrs.get("cell_run_id")
    with _Timer(ctx, "mlflow"):
        if cell_run is None:
            cell_run = tracking.start_run(ctx.mlflow, ctx.experiment, "/".join(map(str, cell)),
                                          {"role": "cell", **cell_tags(cell)})
            with _Timer(ctx, "optuna"):
                main.set_user_attr("cell_run_id", cell_run)
        else:  # taken over from a dead worker or resumed: its unrecorded runs are orphans
            tracking.reopen_run(ctx.mlflow, cell_run)
            keep = {t.user_attrs.get("mlflow_run_id") for s in studies.values() for t in tuning.finished(s)}
            keep |= {v for k, v in main.user_attrs.items() if k.startswith("eval:")}
            tracking.fail_orphans(ctx.mlflow, ctx.experiment, cell_run, keep)
    try:
        for arm, study in studies.items():
            _tune(ctx, cell, study, arm, cell_run, claim)
        _evaluate(ctx, cell, main, cell_run, claim)
        _finish(ctx, cell, main, cell_run, recovered)
    except Interrupted:
        tracking.end_run(ctx.mlflow, cell_run, "KILLED")
        raise


def _tune(ctx: Context, cell, study, arm: str, cell_run: str, claim: tuning.Claim) -> None:
    cfg = ctx.cfg
    dataset, optimizer, batch = cell
    split = data.load(dataset, cfg.tuning_seed, cfg.val_fraction, cfg.test_fraction)
    net = network(cfg, split)
    space = cfg.search_spaces[optimizer]
    lease = tuning.TrialLease(ctx.worker, cfg.lease_seconds)
    while True:
        with _Timer(ctx, "optuna"):
            remaining = cfg.trials - len(tuning.finished(study))
            if remaining <= 0:
                return
            trials, hypers = [], []
            for _ in range(min(cfg.population[batch], remaining)):  # ask and suggest in turn: the liar sees each
                trial = study.ask()
                lease.start(trial)
                trials.append(trial)
                hypers.append(tuning.suggest(trial, space))
        k = len(trials)
        hyper = {name: np.array([h[name] for h in hypers]) for name in hypers[0]}

        def report(epoch, metrics, members):
            if ctx.stop_requested[0]:
                raise Interrupted()
            with _Timer(ctx, "optuna"):
                claim.heartbeat()
                lease.beat([trials[m] for m in members])
                if arm == "random" or cfg.pruner == "none":
                    return None
                prune = np.zeros(len(members), bool)
                for j, m in enumerate(members):
                    value = float(metrics["val_loss"][j])
                    if np.isfinite(value):
                        trials[m].report(value, epoch)
                        prune[j] = trials[m].should_prune()
                return prune

        try:
            result = train.train(net, split, optimizer, hyper, batch, cfg.epochs[dataset], cfg.tuning_seed,
                                 net.init(cfg.tuning_seed, k), callbacks=(report,))
        except Interrupted:
            with _Timer(ctx, "optuna"):
                for trial in trials:  # failed cleanly and queued again: the resumed sweep retries them
                    tuning.tell(study, trial, "FAIL", None)
                    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        _record_trials(ctx, cell, study, arm, cell_run, trials, hypers, result)


def _trial_outcome(result: train.TrainResult, m: int) -> tuple[str, float | None]:
    if result.diverged[m]:  # a recorded outcome with a finite penalty: no better than not training at all
        return "DIVERGED", float(result.initial_val_loss[m])
    if result.pruned[m]:
        return "PRUNED", None
    return "COMPLETE", float(result.final("val_loss")[m])


def _record_trials(ctx, cell, study, arm, cell_run, trials, hypers, result) -> None:
    for m, trial in enumerate(trials):
        state, value = _trial_outcome(result, m)
        curves = {name: result.history[name][m] for name in CURVES if name in result.history}
        with _Timer(ctx, "mlflow"):
            run_id = tracking.log_run(
                ctx.mlflow, ctx.experiment, f"trial-{trial.number}" + ("-random" if arm == "random" else ""),
                {"role": "trial", **cell_tags(cell), "trial_number": trial.number, "state": state, "arm": arm},
                params=hypers[m], curves=curves, final={"diverged": float(result.diverged[m])},
                parent_run_id=cell_run)
        with _Timer(ctx, "optuna"):
            trial.set_user_attr("mlflow_run_id", run_id)
            tuning.tell(study, trial, state, value)
        ctx.progress("trial", {"cell": cell, "state": state, "value": value})


def _evaluate(ctx: Context, cell, study, cell_run: str, claim: tuning.Claim) -> None:
    """Both tracks, every evaluation seed; seed s fixes split, initial weights and data order for both."""
    cfg = ctx.cfg
    dataset, optimizer, batch = cell
    best = tuning.best_trial(study)
    space = cfg.search_spaces[optimizer]
    tuned = tuning.hyper_from_params(best.params, space) if best is not None else dict(cfg.defaults[optimizer])
    tracks = {"tuned": tuned, "default": dict(cfg.defaults[optimizer])}
    for seed in cfg.seeds:
        missing = [t for t in tracks if f"eval:{t}:{seed}" not in study.user_attrs]
        if not missing:
            continue
        if ctx.stop_requested[0]:
            raise Interrupted()
        claim.heartbeat()
        split = data.load(dataset, seed, cfg.val_fraction, cfg.test_fraction)
        net = network(cfg, split)
        hyper = {name: np.array([tracks[t][name] for t in missing]) for name in tracks["tuned"]}
        theta0 = net.init(seed, len(missing))
        result = train.train(net, split, optimizer, hyper, batch, cfg.epochs[dataset], seed, theta0)
        test_loss, test_acc = net.evaluate(result.theta, split.X_test, split.Y_test)
        start_loss, start_acc = net.evaluate(theta0, split.X_test, split.Y_test)
        for m, track in enumerate(missing):
            bad = bool(result.diverged[m])  # a diverged network scores as the untrained one it is no better than
            final = {"test_loss": float(start_loss[m] if bad else test_loss[m]), "diverged": float(bad)}
            if test_acc is not None:
                final["test_accuracy"] = float(start_acc[m] if bad else test_acc[m])
            tags = {"role": "eval", **cell_tags(cell), "track": track, "seed": seed}
            if track == "tuned":
                tags["tuned_from"] = f"trial {best.number}" if best is not None else "defaults (no trial completed)"
            with _Timer(ctx, "mlflow"):
                run_id = tracking.log_run(
                    ctx.mlflow, ctx.experiment, f"eval-{track}-{seed}", tags, params=tracks[track],
                    curves={n: result.history[n][m] for n in CURVES if n in result.history}, final=final,
                    parent_run_id=cell_run)
            with _Timer(ctx, "optuna"):
                study.set_user_attr(f"eval:{track}:{seed}", run_id)
        ctx.progress("eval", {"cell": cell, "seed": seed})


def _finish(ctx: Context, cell, study, cell_run: str, recovered: dict) -> None:
    """Cell artifacts (curves, Optuna's figures, the resolved config, the dataset), then mark the cell done."""
    cfg = ctx.cfg
    dataset = cell[0]
    with _Timer(ctx, "optuna"):
        importances = tuning.importances(study)
        study.set_user_attr("importances", importances)
    with tempfile.TemporaryDirectory() as tmp, _Timer(ctx, "mlflow"):
        out = Path(tmp)
        files = tuning.plot_history_and_importances(study, out)
        files.append(_plot_eval_curves(ctx, cell, study, out))
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
        files.append(out / "config.yaml")
        best = tuning.best_trial(study)
        final = {"best_val_loss": best.value} if best is not None else {}
        tracking.finish_cell_run(ctx.mlflow, cell_run, files, final, dataset_input=_dataset_input(cfg, dataset),
                                 params={"recovered_trials": sum(len(v) for v in recovered.values())})
    with _Timer(ctx, "optuna"):
        study.set_user_attr("done", True)


def _dataset_input(cfg: SweepConfig, dataset: str) -> dict:
    split = data.load(dataset, cfg.tuning_seed, cfg.val_fraction, cfg.test_fraction)
    return {"name": dataset, "X": split.X_train, "y": split.Y_train.argmax(axis=1) if split.n_classes else
            split.Y_train[:, 0], "source": data.DATASETS[dataset].description or dataset}


def _plot_eval_curves(ctx: Context, cell, study, out: Path) -> Path:
    """Validation loss against epoch for both tracks, every seed: the cell's learning curves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    colors = {"tuned": "tab:blue", "default": "tab:orange"}
    runs = {k: v for k, v in study.user_attrs.items() if k.startswith("eval:")}
    curves = tracking.metric_histories(ctx.mlflow, list(runs.values()), "val_loss")
    for key, run_id in sorted(runs.items()):
        track = key.split(":")[1]
        steps, values = curves.get(run_id, ([], []))
        ax.plot(steps, values, color=colors[track], alpha=0.6,
                label=track if key.endswith(":0") else None)
    ax.set(xlabel="epoch", ylabel="validation loss", yscale="log", title=" / ".join(map(str, cell)))
    ax.legend()
    fig.tight_layout()
    path = out / "learning_curves.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
