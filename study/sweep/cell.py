"""One cell of the sweep, (dataset, optimizer, batch size): tune, choose per budget, evaluate, record.

Its ``seconds_per_epoch`` and its dataset's caps come from the sweep's timing pre-phase (``study.sweep.timing``).
Tuning runs each of the cell's TPE searches (one per tuning run, on split seed tuning_seed + r) and its random arm:
it asks Optuna for K trials at once, trains the K networks in one stacked pass scored at the cell's checkpoints,
reports each member to its own trial (a pruned or diverged member stops, the others go on) and tells K results;
every trial's final test loss is recorded, never read by a choice. Then each budget's hyperparameters are chosen on
validation at its cap (``study.sweep.choices``), and each distinct choice (tuned track) and the defaults (default
track) are retrained with every evaluation seed, scored at the checkpoints on validation and test. The cell's ledger records what is done, so resuming a cell redoes only what
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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from study.core import batches, data, nn, train
from study.schema.sweep import Sweep
from study.sweep import cell_figures, choices, names, record, timing, tracking, tuning
from study.sweep.context import Context, Interrupted
from study.sweep.tuning import ledger


@functools.lru_cache(maxsize=16)
def load_split(dataset: str, seed: int, val_fraction: float, test_fraction: float,
               missing: str = "refuse") -> data.Split:
    """A cell loads its tuning split three times (timing, tuning, the dataset input): once is enough."""
    return data.load(dataset, seed, val_fraction, test_fraction, missing)


def split_of(cfg: Sweep, dataset: str, seed: int) -> data.Split:
    """The dataset's split for ``seed`` under the profile's fractions and its rule for a CSV file's missing values."""
    return data.load(dataset, seed, cfg.profile.split.val, cfg.profile.split.test, cfg.profile.missing_values)


def tuning_split(cfg: Sweep, dataset: str, run: int = 0) -> data.Split:
    """The split tuning run ``run`` is tuned on (run 0's also times the cell): seed tuning_seed + run."""
    p = cfg.profile
    return load_split(dataset, p.tuning_seed + run, p.split.val, p.split.test, p.missing_values)


def checkpoints(ctx: Context, cell: tuple, n_train: int) -> tuple[np.ndarray, dict[str, int]]:
    """The cell's checkpoint grid (every epoch end, 8 per decade, its caps) and its caps as update counts."""
    caps = timing.cap_updates(ctx.cfg, cell, n_train, ctx.timing, ctx.caps)
    per_epoch = batches.steps_per_epoch(n_train, cell[2])
    return train.checkpoint_grid(per_epoch, ctx.cfg.epochs_of(cell[0]), extra=caps.values()), caps


def network(cfg: Sweep, split: data.Split) -> nn.MLP:
    shape = cfg.profile.network
    return nn.MLP((split.n_features, *shape.hidden, split.n_outputs), shape.activation, split.task)


def open_studies(ctx: Context, cell: tuple) -> dict:
    """(tuning run, arm) -> study: the TPE runs, then the random arm (``tuning.tunings``)."""
    with ctx.timed("optuna"):
        return {(run, arm): tuning.cell_study(ctx.storage, ctx.cfg, cell, arm, run)
                for run, arm in tuning.tunings(ctx.cfg)}


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
    first = {k: v for k, v in (("seconds_per_epoch", ctx.timing.get(timing.cell_key(cell))),
                               ("started_ms", int(time.time() * 1000))) if getattr(book.record, k) is None}
    if first:
        book.update(**first)
    entry = ctx.backlog.open(cell, mirror, claim, studies)
    try:
        for (run, arm), study in studies.items():
            _tune(ctx, cell, study, run, arm, mirror, claim)
        _evaluate(ctx, cell, studies, mirror, claim)
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


def _tune(ctx: Context, cell, study, run: int, arm: str, mirror: record.Mirror, claim: tuning.Claim) -> None:
    cfg, seed = ctx.cfg, ctx.cfg.profile.tuning_seed + run  # run r's split, initial weights and data order
    dataset, optimizer, batch = cell
    split = tuning_split(cfg, dataset, run)
    net = network(cfg, split)
    grid, _ = checkpoints(ctx, cell, split.X_train.shape[0])
    prunes = arm == names.TPE and cfg.profile.pruner.name != "none"
    while True:
        ctx.check_stop()  # do not ask for trials we would only fail
        claim.check()
        with ctx.timed("optuna"):
            done = len(tuning.finished(study))
            if done >= cfg.profile.trials:
                tuning.fail_orphans(study)  # none of ours is running now: any RUNNING trial is nobody's
                return
        trials, hypers = _ask_population(ctx, cell, study, run, arm, done, claim)

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
                                 callbacks=(report,), checkpoints=grid)
        except Interrupted:
            with ctx.timed("optuna"), tuning.our_trials(claim):  # failed cleanly and queued again: retried on resume
                tuning.requeue(study, trials)
            raise
        ctx.network_epochs += int(result.epochs_run.sum())
        # every trial is scored on test once it stops (the report compares TPE's and random search's choices on
        # it, and draws the expected best-of-k curves): recorded, never read by a choice
        held_out = held_out_scores(net, result, theta0, split, ("test",))
        claim.check(force=True)  # still ours after training, before a result is written anywhere
        for m, trial in enumerate(trials):
            state, value = _trial_outcome(result, m)
            curves = {name: values[m] for name, values in result.history.items()}
            final = {**_final_values(result, m), **{k: v[m] for k, v in held_out.items()}}
            with ctx.timed("optuna"), tuning.our_trials(claim):
                mirror.trial(trial, run, arm, state, hypers[m], curves, result.checkpoints.member(m), final)
                tuning.tell(study, trial, state, value)
            ctx.progress("trial", {"cell": cell, "state": state, "value": value})
        ctx.backlog.work()


def _ask_population(ctx: Context, cell, study, run: int, arm: str, done: int,
                    claim: tuning.Claim) -> tuple[list, list]:
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
                trial, hyper = tuning.ask(study, ctx.cfg, cell, arm, done + position, ctx.worker, run)
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
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged member overflows here: replaced below
            loss, accuracy = net.evaluate(result.theta, X, Y)
        start_loss, start_accuracy = net.evaluate(theta0, X, Y)
        bad = np.asarray(result.diverged, bool)
        out[f"{part}_loss"] = [float(v) for v in np.where(bad, start_loss, loss)]
        if accuracy is not None:
            out[f"{part}_accuracy"] = [float(v) for v in np.where(bad, start_accuracy, accuracy)]
    return out


def _evaluate(ctx: Context, cell, studies: dict, mirror: record.Mirror, claim: tuning.Claim) -> None:
    """Each budget's choice of every tuning run (tuned track) and the defaults (default track), every evaluation
    seed, trained together per seed; seed s fixes split, initial weights and data order for all of them."""
    cfg, book = ctx.cfg, mirror.book
    dataset, optimizer, batch = cell
    if not book.record.choices:  # a function of the trials in the storage: the same on resume, kept for the record
        n_train = tuning_split(cfg, dataset).X_train.shape[0]
        with ctx.timed("optuna"):
            book.update(choices=choices.choose(cfg, cell, studies, checkpoints(ctx, cell, n_train)[1]))
    planned = choices.plan(cfg, cell, book.record.choices)

    def between_epochs(epoch, metrics, members):
        ctx.check_stop()  # an evaluation stopped half-way is simply run again on resume: it is deterministic
        ctx.backlog.work()

    for seed in cfg.seeds:
        missing = [p for p in planned if not book.has_eval((*p[0], seed))]
        if not missing:
            continue
        ctx.check_stop()
        claim.check()
        split = split_of(cfg, dataset, seed)
        net = network(cfg, split)
        grid, _ = checkpoints(ctx, cell, split.X_train.shape[0])
        theta0 = net.init(seed, len(missing))
        hyper = {name: np.array([p[1][name] for p in missing]) for name in cfg.defaults(optimizer)}
        result = train.train(net, split, optimizer, hyper, batch, cfg.epochs_of(dataset), seed, theta0,
                             callbacks=(between_epochs,), watch=("test",), checkpoints=grid)
        ctx.network_epochs += int(result.epochs_run.sum())
        scores = held_out_scores(net, result, theta0, split, ("test", "train"))
        initial_test = net.evaluate(theta0, split.X_test, split.Y_test)[0]
        for m, ((track, run, trial), hyper_m, budgets) in enumerate(missing):
            final = {**_final_values(result, m), "test_loss": scores["test_loss"][m],
                     "final_train_loss": scores["train_loss"][m],
                     "initial_val_loss": float(result.initial_val_loss[m]), "initial_test_loss": float(initial_test[m])}
            final.pop("train_loss", None)  # logged per epoch: MLflow's latest value is the final one
            final.pop("val_accuracy", None)
            if "test_accuracy" in scores:
                final["test_accuracy"] = scores["test_accuracy"][m]
            tags = {names.TUNED_FROM: f"trial {trial} of tuning run {run}" if trial != ledger.DEFAULTS
                    else "defaults (no trial has a value at the cap)"} if track == names.TUNED else {}
            curves = {name: values[m] for name, values in result.history.items()}
            mirror.evaluation((track, run, trial, seed), hyper_m, budgets, curves, result.checkpoints.member(m),
                              final, tags)
        ctx.backlog.work()
        ctx.progress("eval", {"cell": cell, "seed": seed})


def cell_summary(studies: dict, book: ledger.Ledger, space: dict) -> dict:
    """The cell run's sortable metrics: best validation loss (run 0's TPE search), mean test scores per track at
    the epochs budget (the tuned track: every run's choice for it), diverged share, cost (``space``: the cell's
    search space)."""
    summary = {}
    best = tuning.best(studies[(0, names.TPE)], space)
    if best is not None:
        summary["best_val_loss"] = best.value
    evals = {key: {**payload["final"], "budgets": payload.get("budgets", ledger.ALL_BUDGETS)}
             for key, payload in book.eval_payloads().items()}
    evals.update({key: s for key, s in book.record.eval_scores().items() if key not in evals})  # older sweeps'
    for track in (names.TUNED, names.DEFAULT):
        scores = [s for key, s in sorted(evals.items(), key=lambda kv: tuple(map(str, kv[0])))
                  if key[0] == track and "epochs" in s.get("budgets", ledger.ALL_BUDGETS)]
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
    cfg, study, book = ctx.cfg, studies[(0, names.TPE)], mirror.book
    with ctx.timed("optuna"):
        book.update(importances=tuning.importances(study), ended_ms=int(time.time() * 1000))
        trial_rows = tuning.trial_rows(study)
    split = tuning_split(cfg, cell[0])
    updates_per_epoch = batches.steps_per_epoch(split.X_train.shape[0], cell[2])
    title = data.display_key(cell, " / ")
    directory = tempfile.TemporaryDirectory(prefix="optstudy-cell-")
    out = Path(directory.name)
    with ctx.timed("mlflow"):  # figures drawn for MLflow count as tracking
        mirror.gather_curves(updates_per_epoch)
        evals = {key[1:]: run["curves"].get("val_loss", []) for key, run in mirror.curves.items()
                 if key[0] == names.EVAL}
        cell_figures.learning_curves(evals, title, out / "learning_curves.png")
        cell_figures.history(trial_rows, title, out / "optuna_history.png")
        cell_figures.importances(book.record.importances, title, out / "optuna_importances.png")
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.stored(), sort_keys=False))
    shown = data.describe(cell[0])  # a CSV file: its stem, its path and its bytes' digest (two files, one stem)
    dataset_input = {"name": shown.name, "X": split.X_train, "source": shown.source, "digest": shown.digest,
                     "y": split.Y_train.argmax(axis=1) if split.n_classes else split.Y_train[:, 0]}
    params = {"recovered_trials": book.record.recovered_trials, "updates_per_epoch": updates_per_epoch}
    return Finishing(directory, dataset_input, params, resumed)


def updates_per_epoch(cfg: Sweep, cell: tuple) -> int:
    return batches.steps_per_epoch(tuning_split(cfg, cell[0]).X_train.shape[0], cell[2])


def complete(ctx: Context, studies: dict, mirror: record.Mirror, finishing: Finishing) -> bool:
    """Once MLflow holds every run of the cell (and it is this worker's turn at the store): a dead worker's late
    runs marked as orphans, curves.parquet, the summary metrics, the run's end, and the cell marked done. False if
    MLflow could not take it (the cell stays not done, or is marked done with its mirror pending)."""
    book = mirror.book
    if (finishing.resumed or book.record.mlflow_pending or mirror.write_failed) and not mirror.reconcile():
        return False
    out = Path(finishing.directory.name)
    with ctx.timed("mlflow"):
        mirror.curve_table(updates_per_epoch(ctx.cfg, mirror.cell)).to_parquet(out / "curves.parquet", index=False)
        mirror.trial_table().to_parquet(out / "trials.parquet", index=False)
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
