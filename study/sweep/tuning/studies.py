"""The per-cell studies: names, samplers and pruners, ask and tell, and reading the trials back.

A study per cell and arm, named ``<sweep>/<dataset>/<optimizer>/<batch>`` (``.../random`` for the unpruned
random-search arm).

What a trial is suggested depends only on the config and the trials already in the storage: every ask gets a
sampler of its own, seeded from the cell's seed and the trial's place in the cell (``ask``). A sampler keeps its
random state in memory, so one sampler per study would start over on every resume (TPE's later suggestions
changed, and the random arm repeated its first draws); it would also advance on draws made for trials that were
then interrupted. With a seed per place, a resumed cell asks exactly what an uninterrupted one asks:
  - TPE and random search read only COMPLETE and PRUNED trials (and, TPE's constant liar, the RUNNING members of
    the population being asked); FAIL trials are invisible to both, and TPE orders trials by number only to weight
    them, which failing and retrying leaves in the same order;
  - an interrupted trial is failed and its parameters queued again (``requeue``, ``recover_abandoned``); a queued
    trial takes its fixed parameters and never calls the sampler;
  - the pruner compares a trial with the COMPLETE trials at the same epoch only.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from study.schema.sweep import Sweep
from study.sweep import names
from study.sweep.tuning import ledger
from study.sweep.tuning.claims import Claim, ClaimLost
from study.sweep.tuning.spaces import hyper_from_params, suggest

ARMS = (names.TPE, names.RANDOM)


def study_name(sweep: str, cell: tuple, arm: str = names.TPE) -> str:
    dataset, optimizer, batch = cell
    return f"{sweep}/{dataset}/{optimizer}/{batch}" + ("/random" if arm == names.RANDOM else "")


def _cell_seed(cfg: Sweep, cell: tuple, arm: str) -> int:
    """A sampler seed per cell and arm, fixed by the config: the same cell samples the same way in every run."""
    return (cfg.profile.sampler.seed * 1_000_003 + cfg.cells().index(cell) * 2 + (arm == names.RANDOM)) % (2**31)


def sampler(cfg: Sweep, cell: tuple, arm: str, place: int):
    """The sampler of the trial asked at ``place`` (0-based: the trials of the cell and arm that count before its
    population, plus its position in the population), seeded from the cell's seed and the place alone."""
    seed = int(np.random.SeedSequence((_cell_seed(cfg, cell, arm), place)).generate_state(1)[0])
    if arm == names.RANDOM or cfg.profile.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar keeps the K trials of a population apart while they run
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.profile.sampler.n_startup_trials,
                                      constant_liar=True)


def ask(study: optuna.Study, cfg: Sweep, cell: tuple, arm: str, place: int, worker: str) -> tuple[optuna.Trial, dict]:
    """A trial at ``place`` (see ``sampler``), marked as ``worker``'s, and its hyperparameters under their lecture
    names: a queued retry's if there is one (its parameters fixed), else the place's own sampler's suggestions."""
    study.sampler = sampler(cfg, cell, arm, place)
    trial = study.ask()
    ledger.mark_trial_worker(trial, worker)
    return trial, suggest(trial, cfg.spaces[cell[1]])


def report(trial: optuna.Trial, value: float, epoch: int) -> bool:
    """A trial's validation loss after ``epoch``, for its pruner; True when the pruner stops it here."""
    trial.report(value, epoch)
    return trial.should_prune()


def cell_study(storage, cfg: Sweep, cell: tuple, arm: str = names.TPE) -> optuna.Study:
    """The study of a cell and arm (created on first use). Its sampler is replaced at every ``ask``."""
    pruning = cfg.profile.pruner
    if arm == names.RANDOM or pruning.name == "none":
        pruner = optuna.pruners.NopPruner()
    else:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=pruning.n_startup_trials,
                                             n_warmup_steps=pruning.n_warmup_steps)
    return optuna.create_study(storage=storage, study_name=study_name(cfg.name, cell, arm),
                               sampler=sampler(cfg, cell, arm, 0), pruner=pruner, direction="minimize",
                               load_if_exists=True)


def finished(study: optuna.Study) -> list:
    """Trials that count against the budget: COMPLETE (DIVERGED included) and PRUNED. FAIL never counts."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _best_trial(study: optuna.Study):
    """The best COMPLETE trial that did not diverge, or None."""
    ok = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
          if ledger.trial_state(t) != names.DIVERGED and t.value is not None and math.isfinite(t.value)]
    return min(ok, key=lambda t: (t.value, t.number)) if ok else None


@dataclass(frozen=True)
class Best:
    """The best trial of a cell, as the rest of the sweep reads it: its number, its value (validation loss) and its
    hyperparameters under their lecture names."""
    number: int
    value: float
    hyper: dict


def best(study: optuna.Study, space: dict) -> Best | None:
    """The best trial that did not diverge: its number, value and hyperparameters (``space``: the optimizer's
    search space), or None."""
    trial = _best_trial(study)
    return None if trial is None else Best(trial.number, trial.value, hyper_from_params(trial.params, space))


def tell(study: optuna.Study, trial: optuna.Trial, state: str, value: float | None) -> None:
    """Finish a trial: COMPLETE / DIVERGED with its value (a diverged trial completes with its penalty), PRUNED,
    or FAIL. The MLflow tag's spelling is kept in the trial's record."""
    ledger.mark_trial_state(trial, state)
    if state in (names.COMPLETE, names.DIVERGED):
        study.tell(trial, value)
    else:
        study.tell(trial, state=TrialState.PRUNED if state == names.PRUNED else TrialState.FAIL)


@contextlib.contextmanager
def our_trials(claim: Claim):
    """Writes to the trials of a held cell. A trial that another worker has finished meanwhile means the cell is
    theirs now (a database restart dropped our claim between two checks, and they took the cell and failed our
    running trials): that is ``ClaimLost``, not a crash."""
    try:
        yield
    except optuna.exceptions.UpdateFinishedTrialError:
        raise ClaimLost(claim.name) from None


def requeue(study: optuna.Study, trials) -> None:
    """Fail trials that were stopped half-way (Ctrl-C) and queue their parameters again, in the order they were
    asked: the next population takes them first, at the places they had."""
    for trial in trials:
        tell(study, trial, names.FAIL, None)
        study.enqueue_trial(trial.params, user_attrs=ledger.retry_marker(trial.number))


def recover_abandoned(study: optuna.Study) -> list[int]:
    """Fail every RUNNING trial of a cell whose claim we now hold and queue its parameters again; returns their
    numbers. A cell has one owner, so a trial still running when we take it belongs to a worker that died (or lost
    its claim) in the middle of it."""
    dead = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if t.params:  # one stopped before its first suggestion has nothing to try again
            study.enqueue_trial(t.params, user_attrs=ledger.retry_marker(t.number))
        dead.append(t.number)
    return dead


def fail_orphans(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials left in a cell whose own trials have all been told; returns their numbers. Such a
    trial was made by a storage call that the retry made again after the database had committed it (its first reply
    lost to a restart of PostgreSQL): nobody holds it and it has no result, so it is failed and not retried."""
    orphans = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in orphans:
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    return orphans


def running_numbers(study: optuna.Study) -> set[int]:
    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}


# PED-ANOVA's note when few trials make every parameter equally important: a fact the figure shows, not a problem
SAME_QUANTILES = "Target and region quantiles select the same set of trials"


def importances(study: optuna.Study) -> dict[str, float]:
    """Parameter importances over the completed trials (PED-ANOVA: fast and fine with few trials)."""
    params = {p for t in finished(study) for p in t.params}
    if len(params) < 2:
        return {p: 1.0 for p in params}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=SAME_QUANTILES)
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            return dict(optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()))
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def trial_rows(study: optuna.Study) -> list[dict]:
    """A study's trials as plain rows (for the cell's figures and records): number, state, value, params."""
    return [{"number": t.number, "state": ledger.trial_state(t), "value": t.value, "params": dict(t.params),
             "finished": t.state.is_finished()}
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)]


def read_trials(storage, sweep: str, config: Sweep | dict) -> tuple[list[dict], list[dict], dict]:
    """Every finished tuning trial of a sweep as rows (hyperparameters under lecture names; a random-arm trial's
    held-out test loss, which only the expected best-of-k curves read), parameter importances per cell, and each
    cell's record (``ledger.CellRecord``). ``config``: the sweep, or the mapping its stores keep (``Sweep.stored``)."""
    from study.sweep.tuning.storage import study_attrs

    cfg = config if isinstance(config, Sweep) else Sweep.from_stored(config)
    attrs = study_attrs(storage, sweep)
    trials, importance_rows, cells = [], [], {}
    # A trial failed by an interruption and queued again is not an outcome of the sweep: its retry is. Leaving it
    # out makes a resumed sweep's trials those of an uninterrupted one (its own failures would still count).
    for cell in cfg.cells():
        dataset, optimizer, batch = cell
        keys = {names.DATASET: dataset, names.OPTIMIZER: optimizer, names.BATCH_SIZE: str(batch)}
        for arm in ARMS:
            name = study_name(sweep, cell, arm)
            if name not in attrs:
                continue
            if arm == names.TPE:
                record = ledger.read(attrs[name])
                cells[cell] = record
                importance_rows += [{**keys, "param": p, "importance": v}
                                    for p, v in sorted(record.importances.items())]
            study = optuna.load_study(study_name=name, storage=storage)
            everything = study.get_trials(deepcopy=False)
            retried = {ledger.retry_of(t) for t in everything} - {None}
            done = [t for t in everything if t.state.is_finished()
                    and not (t.state == TrialState.FAIL and t.number in retried)]
            for t in sorted(done, key=lambda t: t.number):
                hyper = hyper_from_params(t.params, cfg.spaces[optimizer]) if t.params else {}
                state = ledger.trial_state(t)
                final = (ledger.trial_payload(t) or {}).get("final", {})
                trials.append({**keys, "arm": arm, "number": t.number, "state": state,
                               "value": t.value if state in (names.COMPLETE, names.DIVERGED) else math.nan,
                               **hyper, "test_loss": final.get("test_loss", math.nan)})
    return trials, importance_rows, cells


def trial_state_counts(storage, sweep: str) -> dict[str, int]:
    """Tuning trials of a sweep by state (DIVERGED counted apart from COMPLETE)."""
    from study.sweep.tuning.storage import is_cell_study

    counts: dict[str, int] = {}
    for summary in storage.get_all_studies():
        if not is_cell_study(summary.study_name, sweep):
            continue
        for t in optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False):
            state = ledger.trial_state(t)
            counts[state] = counts.get(state, 0) + 1
    return counts
