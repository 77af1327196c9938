"""A cell's record in the Optuna storage: the one place that knows how it is written down.

The Optuna storage is the source of truth of a sweep; MLflow mirrors it. What the storage must remember about a
cell beyond its trials lives here, typed: whether it is done, who holds it, its MLflow run ids, what is still
waiting for MLflow, how many trials were recovered from dead workers, its measured cost per epoch. Every other
module reads and writes these through this one; none knows an attribute's key.

Where it lives (Optuna user attributes, plain JSON):
  - the cell study (``<sweep>/<dataset>/<optimizer>/<batch>``): ``record`` holds the ``CellRecord``; a payload
    that could not reach MLflow waits under ``pending:<kind>:<key>`` until ``reconcile`` logs it;
  - each trial: ``worker`` (who ran it), ``state`` (the MLflow tag's spelling: DIVERGED is an Optuna COMPLETE),
    ``mlflow_payload`` (what its MLflow run holds, kept before the trial is told), ``retry_of`` (the trial whose
    parameters it retries). A finished trial cannot be changed, so its run id goes into the cell's record.

This module works on the study and trial objects the tuning package hands it (duck-typed: ``user_attrs``,
``set_user_attr``), so it imports no Optuna itself: ``study.sweep.tuning`` stays the only door.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

RECORD = "record"
PENDING = "pending:"
TRIAL_WORKER, TRIAL_STATE, RETRY_OF, TRIAL_PAYLOAD = "worker", "state", "retry_of", "mlflow_payload"


@dataclass
class CellRecord:
    """What the storage knows about a cell besides its trials."""
    done: bool = False  # tuned, evaluated and its artifacts written (MLflow may still lack some of it)
    owner: str = ""  # the worker that claimed it last: a new claim means anything in flight is someone else's
    cell_run_id: str | None = None
    mlflow_finished: bool = False  # the cell run has its artifacts and summary and is FINISHED
    mlflow_pending: bool = False  # some trial or evaluation waits for MLflow (its payload is in the storage)
    recovered_trials: int = 0  # trials of dead workers failed and retried (a param of the cell run)
    evals: dict = field(default_factory=dict)  # "track:seed" -> MLflow run id, or "" while it waits for MLflow
    scores: dict = field(default_factory=dict)  # "track:seed" -> the evaluation's final values and "hyper"
    trial_runs: dict = field(default_factory=dict)  # "arm:number" -> MLflow run id of a finished trial
    seconds_per_epoch: float | None = None  # one network alone (K = 1), measured before tuning
    importances: dict = field(default_factory=dict)  # parameter -> importance over the tuning trials

    @property
    def mirrored(self) -> bool:
        """MLflow holds everything the storage records of the cell, and its cell run is finished."""
        return self.mlflow_finished and not self.mlflow_pending

    def has_eval(self, track: str, seed: int) -> bool:
        return _eval_key(track, seed) in self.evals

    def eval_runs(self) -> dict[tuple[str, int], str]:
        """(track, seed) -> run id of every evaluation MLflow holds."""
        return {_parse_eval_key(k): v for k, v in self.evals.items() if v}

    def eval_scores(self) -> dict[tuple[str, int], dict]:
        """(track, seed) -> final values (test_loss, test_accuracy on classification sets, diverged, updates,
        seconds, final_train_loss, initial_val_loss) and ``hyper`` of every evaluation."""
        return {_parse_eval_key(k): v for k, v in self.scores.items()}


def _eval_key(track: str, seed: int) -> str:
    return f"{track}:{int(seed)}"


def _parse_eval_key(key: str) -> tuple[str, int]:
    track, seed = key.split(":")
    return track, int(seed)


def read(user_attrs: dict) -> CellRecord:
    """The record kept in a cell study's user attributes (a fresh one if the cell was never started)."""
    raw = user_attrs.get(RECORD) or {}
    known = {f.name for f in dataclasses.fields(CellRecord)}
    return CellRecord(**{k: v for k, v in raw.items() if k in known})


class Ledger:
    """A cell's record bound to its study, for the worker that holds the cell: reads once, writes on change.

    Only the holder of the cell's claim writes, so a read-modify-write of the record cannot race."""

    def __init__(self, study):
        self.study = study
        self.record = read(study.user_attrs)

    def refresh(self) -> CellRecord:
        self.record = read(self.study.user_attrs)
        return self.record

    def update(self, **changes) -> None:
        self.record = dataclasses.replace(self.record, **changes)
        self.study.set_user_attr(RECORD, dataclasses.asdict(self.record))

    # --- what MLflow holds ------------------------------------------------------------------------------------
    def logged(self, trials: dict | None = None, evals: dict | None = None) -> None:
        """Runs MLflow now holds, in one write: ``trials`` (arm, number) -> run id; ``evals`` (track, seed) ->
        (run id, final scores). An evaluation counts as done from here on."""
        trials, evals = trials or {}, evals or {}
        if not trials and not evals:
            return
        self.update(trial_runs={**self.record.trial_runs, **{f"{a}:{n}": r for (a, n), r in trials.items()}},
                    evals={**self.record.evals, **{_eval_key(*k): r for k, (r, _) in evals.items()}},
                    scores={**self.record.scores, **{_eval_key(*k): s for k, (_, s) in evals.items()}})

    def keep_pending_eval(self, track: str, seed: int, scores: dict, payload: dict) -> None:
        """An evaluation MLflow could not take (the server is away): done, its payload kept to log later."""
        key = _eval_key(track, seed)
        self.study.set_user_attr(f"{PENDING}eval:{key}", payload)
        self.update(evals={**self.record.evals, key: ""}, scores={**self.record.scores, key: scores})

    def pending_evals(self) -> dict[tuple[str, int], dict]:
        """(track, seed) -> payload of every evaluation MLflow does not hold yet."""
        attrs = self.study.user_attrs
        return {_parse_eval_key(k): attrs[f"{PENDING}eval:{k}"] for k, v in self.record.evals.items()
                if not v and f"{PENDING}eval:{k}" in attrs}

    def trial_run_id(self, trial, arm: str) -> str | None:
        """The MLflow run of a finished trial, once MLflow holds it."""
        return self.record.trial_runs.get(f"{arm}:{trial.number}")


# --- trials, for everyone who reads or writes them ------------------------------------------------------------
def mark_trial_worker(trial, worker: str) -> None:
    trial.set_user_attr(TRIAL_WORKER, worker)


def trial_worker(trial) -> str:
    return trial.user_attrs.get(TRIAL_WORKER, "")


def keep_trial_payload(trial, payload: dict) -> None:
    """Before a trial is told: what its MLflow run will hold, so that MLflow can be given it whenever it can take
    it (now, once the other worker has written, or after the server comes back, or after this worker died)."""
    trial.set_user_attr(TRIAL_PAYLOAD, payload)


def trial_payload(trial) -> dict | None:
    return trial.user_attrs.get(TRIAL_PAYLOAD)


def mark_trial_state(trial, state: str) -> None:
    trial.set_user_attr(TRIAL_STATE, state)


def trial_state(trial) -> str:
    """COMPLETE, PRUNED, FAIL or DIVERGED (a diverged trial is COMPLETE to Optuna, with its penalty as value)."""
    return trial.user_attrs.get(TRIAL_STATE, trial.state.name)


def retry_marker(number: int) -> dict:
    """The user attributes of a queued trial that retries trial ``number``'s parameters."""
    return {RETRY_OF: number}


def retry_of(trial) -> int | None:
    return trial.user_attrs.get(RETRY_OF)
