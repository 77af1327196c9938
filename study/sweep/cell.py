"""One cell of the sweep, (dataset, optimizer, batch size): time it, tune, evaluate, record.

Before tuning, the cell times one network trained alone (K = 1): its ``seconds_per_epoch``, the cost that the
report's wall-time budget uses. Tuning asks Optuna for K trials at once, trains the K networks in one stacked pass,
reports each member to its own trial (a pruned or diverged member stops, the others go on) and tells K results.
Evaluation retrains the best hyperparameters (tuned track) and the defaults (default track) with every evaluation
seed and scores them on the test split. The cell's ledger records what is done, so resuming a cell redoes only what
is missing; MLflow mirrors it (study.sweep.record).

A resumed cell gives what an uninterrupted one gives: Ctrl-C is honoured between asks and between epochs, and what
it stops half-way is failed and asked again at the same place; a population always ends where an uninterrupted
run's would (a population cut short by a dead worker is completed alone before the next one starts); suggestions
depend only on the seed and the trials in the storage (study.sweep.tuning.studies); an evaluation is kept as soon
as it is done, and one stopped half-way is run again from its start.
"""
from __future__ import annotations

import functools
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from study.core import batches, data, nn, train
from study.schema.sweep import Sweep
from study.sweep import cell_figures, names, record, tracking, tuning
from study.sweep.context import Context, Interrupted
from study.sweep.tuning import ledger

TIMED_EPOCHS = 5  # seconds_per_epoch: the median of the epochs after the first (which loads the kernel)


@functools.lru_cache(maxsize=16)
def load_split(dataset: str, seed: int, val_fraction: float, test_fraction: float) -> data.Split:
    """A cell loads its tuning split three times (timing, tuning, the dataset input): once is enough."""
    return data.load(dataset, seed, val_fraction, test_fraction)


def tuning_split(cfg: Sweep, dataset: str) -> data.Split:
    """The split a cell is tuned (and timed) on: the tuning seed's."""
    return load_split(dataset, cfg.profile.tuning_seed, cfg.profile.split.val, cfg.profile.split.test)


def network(cfg: Sweep, split: data.Split) -> nn.MLP:
    shape = cfg.profile.network
    return nn.MLP((split.n_features, *shape.hidden, split.n_outputs), shape.activation, split.task)


def open_studies(ctx: Context, cell: tuple) -> dict:
    arms = tuning.ARMS if ctx.cfg.profile.random_arm else (names.TPE,)
    with ctx.timed("optuna"):
        return {arm: tuning.cell_study(ctx.storage, ctx.cfg, cell, arm) for arm in arms}


def run_cell(ctx: Context, cell: tuple, claim: tuning.Claim, studies: dict, book: ledger.Ledger) -> None:
    """Tune and evaluate a cell this worker has claimed (and whose ledger is not done), then hand it to the
    worker's backlog, which finishes its MLflow run and lets go of the claim once MLflow holds all of it."""
    with ctx.timed("optuna"):
        # a cell has one owner, so whatever is still RUNNING in it was left by a worker that is gone
        recovered = sum(len(tuning.recover_abandoned(s)) for s in studies.values())
        claim.own(book, recovered_trials=book.record.recovered_trials + recovered)
    mirror = record.Mirror(ctx, cell, studies, book)
    resumed = bool(book.record.cell_run_id) or any(tuning.finished(s) for s in studies.values())
    if resumed:  # what an earlier worker left: its trials go to MLflow (again, if MLflow lost them), its orphans
        mirror.verify()  # are failed at the end
        mirror.queue_missing()
    if book.record.seconds_per_epoch is None:
        book.update(seconds_per_epoch=seconds_per_epoch(ctx.cfg, cell))
    entry = ctx.backlog.open(cell, mirror, claim, studies)
    try:
        for arm, study in studies.items():
            _tune(ctx, cell, study, arm, mirror, claim)
        _evaluate(ctx, cell, studies[names.TPE], mirror, claim)
    except Interrupted:
        mirror.flush()  # what is done is kept (the trials are in the storage whatever happens)
        mirror.interrupted()
        ctx.backlog.drop(entry)
        raise
    except BaseException:
        ctx.backlog.drop(entry)
        raise
    ctx.backlog.close(entry, prepare_finish(ctx, cell, studies, mirror, recovered > 0 or resumed))


def mirror_done_cell(ctx: Context, cell: tuple, claim: tuning.Claim, studies: dict, book: ledger.Ledger,
                     check: bool = False) -> None:
    """A cell done while MLflow was away, or (``check``) one whose MLflow runs the sweep found missing: write what
    MLflow is missing, then its cell run's end."""
    mirror = record.Mirror(ctx, cell, studies, book)
    if check:
        mirror.verify()
    if mirror.reconcile() and not book.record.mlflow_finished:
        finishing = prepare_finish(ctx, cell, studies, mirror)
        with tracking.writer_turn(ctx.mlflow):
            if not complete(ctx, studies, mirror, finishing):
                finishing.directory.cleanup()


def seconds_per_epoch(cfg: Sweep, cell: tuple) -> float:
    """Wall time of one training epoch of one network alone (K = 1, the optimizer's defaults, no validation): the
    median over the timed epochs after the first. Machine-dependent, like every time."""
    dataset, optimizer, batch = cell
    split = tuning_split(cfg, dataset)
    net = network(cfg, split)
    seed = cfg.profile.tuning_seed
    result = train.train(net, split, optimizer, cfg.defaults(optimizer), batch, TIMED_EPOCHS + 1, seed,
                         net.init(seed, 1), validate=False)
    per_epoch = np.diff(result.history["seconds"][0, :int(result.epochs_run[0])])  # drops the first epoch
    return float(np.median(per_epoch)) if len(per_epoch) else math.nan


def _tune(ctx: Context, cell, study, arm: str, mirror: record.Mirror, claim: tuning.Claim) -> None:
    cfg, seed = ctx.cfg, ctx.cfg.profile.tuning_seed
    dataset, optimizer, batch = cell
    split = tuning_split(cfg, dataset)
    net = network(cfg, split)
    prunes = arm == names.TPE and cfg.profile.pruner.name != "none"
    while True:
        ctx.check_stop()  # do not ask for trials we would only fail
        claim.check()
        with ctx.timed("optuna"):
            done = len(tuning.finished(study))
            if done >= cfg.profile.trials:
                tuning.fail_orphans(study)  # none of ours is running now: any RUNNING trial is nobody's
                return
        trials, hypers = _ask_population(ctx, cell, study, arm, done, claim)

        def report(epoch, metrics, members):
            ctx.check_stop()
            ctx.backlog.work()  # a slice of MLflow writes if the store is free
            with ctx.timed("optuna"), tuning.our_trials(claim):
                claim.check()
                if not prunes:
                    return None
                prune = np.zeros(len(members), bool)
                for j, m in enumerate(members):
                    value = float(metrics["val_loss"][j])
                    if np.isfinite(value):
                        prune[j] = tuning.report(trials[m], value, epoch)
                return prune

        hyper = {name: np.array([h[name] for h in hypers]) for name in hypers[0]}
        theta0 = net.init(seed, len(trials))
        try:
            result = train.train(net, split, optimizer, hyper, batch, cfg.epochs_of(dataset), seed, theta0,
                                 callbacks=(report,))
        except Interrupted:
            with ctx.timed("optuna"), tuning.our_trials(claim):  # failed cleanly and queued again: retried on resume
                tuning.requeue(study, trials)
            raise
        ctx.network_epochs += int(result.epochs_run.sum())
        # the random arm's trials are also scored on test, for the expected best-of-k curves only: no choice reads it
        held_out = held_out_scores(net, result, theta0, split, ("test",)) if arm == names.RANDOM else {}
        claim.check(force=True)  # still ours after training, before a result is written anywhere
        for m, trial in enumerate(trials):
            state, value = _trial_outcome(result, m)
            curves = {name: values[m] for name, values in result.history.items()}
            final = {**_final_values(result, m), **{k: v[m] for k, v in held_out.items()}}
            with ctx.timed("optuna"), tuning.our_trials(claim):
                mirror.trial(trial, arm, state, hypers[m], curves, final)
                tuning.tell(study, trial, state, value)
            ctx.progress("trial", {"cell": cell, "state": state, "value": value})
        ctx.backlog.work()


def _ask_population(ctx: Context, cell, study, arm: str, done: int, claim: tuning.Claim) -> tuple[list, list]:
    """The next population's trials and their hyperparameters, asked and suggested in turn (the liar sees each).
    Populations end where an uninterrupted run's end, at multiples of K: after a worker died with part of one
    told, the rest (queued again) is trained alone. Ctrl-C is honoured before each ask; the trials asked by then
    are failed and queued again, to be asked first, at the same places, on resume."""
    population = ctx.cfg.population_of(cell[2])
    size = min(population - done % population, ctx.cfg.profile.trials - done)
    trials, hypers = [], []
    try:
        for position in range(size):
            ctx.check_stop()
            # our_trials: a database restart can drop the claim here too, and the worker that takes the cell fails
            # the trial being asked before its worker mark or its suggestions are written
            with ctx.timed("optuna"), tuning.our_trials(claim):
                trial, hyper = tuning.ask(study, ctx.cfg, cell, arm, done + position, ctx.worker)
                trials.append(trial)
                hypers.append(hyper)
    except Interrupted:
        with ctx.timed("optuna"), tuning.our_trials(claim):
            tuning.requeue(study, trials)
        raise
    return trials, hypers


def _trial_outcome(result: train.TrainResult, m: int) -> tuple[str, float | None]:
    if result.diverged[m]:  # a recorded outcome with a finite penalty: no better than not training at all
        return names.DIVERGED, float(result.initial_val_loss[m])
    if result.pruned[m]:
        return names.PRUNED, None
    return names.COMPLETE, float(result.final("val_loss")[m])


def _final_values(result: train.TrainResult, m: int) -> dict:
    """A run's final values: where it stopped, updates and seconds in all, whether it diverged. The last finite
    losses of a diverged run are its last before the blow-up."""
    final = {"diverged": float(result.diverged[m])}
    for name in ("train_loss", "val_accuracy", "updates", "seconds"):
        values = result.history.get(name)
        if values is not None:
            finite = values[m][np.isfinite(values[m])]
            if len(finite):
                final[name] = float(finite[-1])
    return final


def held_out_scores(net, result: train.TrainResult, theta0, split: data.Split, parts) -> dict:
    """Each member's loss (and accuracy) on parts of its split after training: ``<part>_loss`` per member. A
    member that diverged scores as the untrained network it is no better than."""
    out = {}
    for part in parts:
        X, Y = getattr(split, f"X_{part}"), getattr(split, f"Y_{part}")
        loss, accuracy = net.evaluate(result.theta, X, Y)
        start_loss, start_accuracy = net.evaluate(theta0, X, Y)
        bad = np.asarray(result.diverged, bool)
        out[f"{part}_loss"] = [float(v) for v in np.where(bad, start_loss, loss)]
        if accuracy is not None:
            out[f"{part}_accuracy"] = [float(v) for v in np.where(bad, start_accuracy, accuracy)]
    return out


def _evaluate(ctx: Context, cell, study, mirror: record.Mirror, claim: tuning.Claim) -> None:
    """Both tracks, every evaluation seed; seed s fixes split, initial weights and data order for both."""
    cfg = ctx.cfg
    dataset, optimizer, batch = cell
    best = tuning.best(study, cfg.spaces[optimizer])
    defaults = cfg.defaults(optimizer)
    tracks = {names.TUNED: best.hyper if best else defaults, names.DEFAULT: defaults}

    def between_epochs(epoch, metrics, members):
        ctx.check_stop()  # an evaluation stopped half-way is simply run again on resume: it is deterministic
        ctx.backlog.work()

    for seed in cfg.seeds:
        missing = [t for t in tracks if not mirror.book.has_eval(t, seed)]
        if not missing:
            continue
        ctx.check_stop()
        claim.check()
        split = data.load(dataset, seed, cfg.profile.split.val, cfg.profile.split.test)
        net = network(cfg, split)
        theta0 = net.init(seed, len(missing))
        hyper = {name: np.array([tracks[t][name] for t in missing]) for name in defaults}
        result = train.train(net, split, optimizer, hyper, batch, cfg.epochs_of(dataset), seed, theta0,
                             callbacks=(between_epochs,), watch=("test",))
        ctx.network_epochs += int(result.epochs_run.sum())
        scores = held_out_scores(net, result, theta0, split, ("test", "train"))
        for m, track in enumerate(missing):
            final = {**_final_values(result, m), "test_loss": scores["test_loss"][m],
                     "final_train_loss": scores["train_loss"][m],
                     "initial_val_loss": float(result.initial_val_loss[m])}
            final.pop("train_loss", None)  # logged per epoch: MLflow's latest value is the final one
            final.pop("val_accuracy", None)
            if "test_accuracy" in scores:
                final["test_accuracy"] = scores["test_accuracy"][m]
            tags = {names.TUNED_FROM: f"trial {best.number}" if best else "defaults (no trial completed)"} \
                if track == names.TUNED else {}
            curves = {name: values[m] for name, values in result.history.items()}
            mirror.evaluation(track, seed, tracks[track], curves, final, tags)
        ctx.backlog.work()
        ctx.progress("eval", {"cell": cell, "seed": seed})


def cell_summary(studies: dict, book: ledger.Ledger, space: dict) -> dict:
    """The cell run's sortable metrics: best validation loss, mean test scores per track, diverged share, cost
    (``space``: the cell's search space)."""
    summary = {}
    best = tuning.best(studies[names.TPE], space)
    if best is not None:
        summary["best_val_loss"] = best.value
    evals = {key: payload["final"] for key, payload in book.eval_payloads().items()}
    evals.update({key: s for key, s in book.record.eval_scores().items() if key not in evals})  # older sweeps'
    for track in (names.TUNED, names.DEFAULT):
        scores = [s for (t, _), s in sorted(evals.items()) if t == track]
        for name in ("test_loss", "test_accuracy"):
            values = [s[name] for s in scores if name in s]
            if values:
                summary[f"{track}_{name}"] = float(np.mean(values))
    states = [ledger.trial_state(t) for s in studies.values() for t in tuning.finished(s)]
    if states:
        summary["diverged_share"] = states.count(names.DIVERGED) / len(states)
    if book.record.seconds_per_epoch is not None and math.isfinite(book.record.seconds_per_epoch):
        summary["seconds_per_epoch"] = book.record.seconds_per_epoch
    return summary


@dataclass
class Finishing:
    """What a cell's MLflow run still needs once the cell is tuned and evaluated. The figures and the config are
    made at once (they need no turn at the store); curves.parquet, the summary and the run's end wait until MLflow
    holds every trial and evaluation of the cell (study.sweep.backlog)."""
    directory: tempfile.TemporaryDirectory
    dataset_input: dict
    params: dict
    resumed: bool = False  # an earlier worker's MLflow runs may be orphans: check before finishing


def prepare_finish(ctx: Context, cell, studies: dict, mirror: record.Mirror, resumed: bool = False) -> Finishing:
    cfg, study, book = ctx.cfg, studies[names.TPE], mirror.book
    with ctx.timed("optuna"):
        book.update(importances=tuning.importances(study))
        trial_rows = tuning.trial_rows(study)
    split = tuning_split(cfg, cell[0])
    updates_per_epoch = batches.steps_per_epoch(split.X_train.shape[0], cell[2])
    title = " / ".join(map(str, cell))
    directory = tempfile.TemporaryDirectory(prefix="optstudy-cell-")
    out = Path(directory.name)
    with ctx.timed("mlflow"):  # figures drawn for MLflow count as tracking
        mirror.gather_curves(updates_per_epoch)
        evals = {(group, number): curves.get("val_loss", []) for (role, group, number), curves in mirror.curves.items()
                 if role == names.EVAL}
        cell_figures.learning_curves(evals, title, out / "learning_curves.png")
        cell_figures.history(trial_rows, title, out / "optuna_history.png")
        cell_figures.importances(book.record.importances, title, out / "optuna_importances.png")
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.stored(), sort_keys=False))
    dataset_input = {"name": cell[0], "X": split.X_train, "source": data.DATASETS[cell[0]].description,
                     "y": split.Y_train.argmax(axis=1) if split.n_classes else split.Y_train[:, 0]}
    params = {"recovered_trials": book.record.recovered_trials, "updates_per_epoch": updates_per_epoch}
    return Finishing(directory, dataset_input, params, resumed)


def complete(ctx: Context, studies: dict, mirror: record.Mirror, finishing: Finishing) -> bool:
    """Once MLflow holds every run of the cell (and it is this worker's turn at the store): a dead worker's late
    runs marked as orphans, curves.parquet, the summary metrics, the run's end, and the cell marked done. False if
    MLflow could not take it (the cell stays not done, or is marked done with its mirror pending)."""
    book = mirror.book
    if (finishing.resumed or book.record.mlflow_pending or mirror.write_failed) and not mirror.reconcile():
        return False
    out = Path(finishing.directory.name)
    with ctx.timed("mlflow"):
        mirror.curve_table().to_parquet(out / "curves.parquet", index=False)
        # how many children MLflow holds now: what a later run checks the store against (study.sweep.sweep)
        held = {"trial_runs": len(book.record.trial_runs), "eval_runs": len(book.record.eval_runs())}
        summary = cell_summary(studies, book, ctx.cfg.spaces[mirror.cell[1]])
        finished = mirror.finish(out, {**summary, **held}, finishing.dataset_input,
                                 finishing.params)
    if finished:
        with ctx.timed("optuna"):
            book.update(done=True, mlflow_finished=True, mlflow_pending=False)
        finishing.directory.cleanup()
    return finished


def park(ctx: Context, mirror: record.Mirror, finishing: Finishing) -> None:
    """MLflow is away and the cell is trained: done in the storage, its evaluations kept there with their payloads
    (its trials' are there already), to be logged by whoever finds the server back."""
    mirror.keep_unlogged()
    with ctx.timed("optuna"):
        mirror.book.update(done=True, mlflow_finished=False, mlflow_pending=True)
    finishing.directory.cleanup()
