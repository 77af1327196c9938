"""A cell's record in the Optuna storage: the one place that knows how it is written down.

The Optuna storage is the source of truth of a sweep; MLflow mirrors it. What the storage must remember about a
cell beyond its trials lives here, typed: whether it is done, who holds it, its MLflow run ids, what is still
waiting for MLflow, how many trials were recovered from dead workers, its measured cost per epoch. Every other
module reads and writes these through this one; none knows an attribute's key.

Where it lives (Optuna user attributes, plain JSON):
  - the cell study (``<sweep>/<dataset>/<optimizer>/<batch>``): ``record`` holds the ``CellRecord``; every
    evaluation's payload is kept under ``eval:<track>:<tuning run>:<trial>:<seed>`` the moment it is done, whether
    MLflow has it or not;
  - each trial: ``worker`` (who ran it), ``state`` (the MLflow tag's spelling: DIVERGED is an Optuna COMPLETE),
    ``mlflow_payload`` (what its MLflow run and the cell's curves.parquet hold, kept before the trial is told),
    ``retry_of`` (the trial whose parameters it retries). A finished trial cannot be changed, so its run id goes
    into the cell's record.

A payload is everything MLflow is given of a run: hyperparameters, tags, final values, and every per-epoch column
of curves.parquet (``pack_curves``: float64 at full precision, compressed). So the MLflow mirror can always be
written again from the storage alone: after the tracking server was away, after a worker died, or after the
MLflow database was lost.

It lives inside the Optuna door (``study.sweep.tuning``): it reads and writes Optuna's studies and trials, which
the rest of the sweep holds only as handles to pass back.
"""
from __future__ import annotations

import base64
import dataclasses
import zlib
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.trial import FrozenTrial

Trial = optuna.Trial | FrozenTrial  # a trial being run (ask) or finished (read back)

RECORD = "record"
EVAL = "eval:"
LEGACY_PENDING = "pending:eval:"  # where sweeps before payloads were kept kept an evaluation MLflow had not taken
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
    evals: dict = field(default_factory=dict)  # "track:seed" -> MLflow run id of an evaluation MLflow holds
    scores: dict = field(default_factory=dict)  # "track:seed" -> the evaluation's final values and "hyper"
    trial_runs: dict = field(default_factory=dict)  # "arm:number" -> MLflow run id of a finished trial
    seconds_per_epoch: float | None = None  # one network alone (K = 1), measured before tuning
    # when the cell's work began (first claimed) and ended (evaluated), in ms since the epoch: the cell run's start
    # and end in MLflow, so its Duration and the timeline show what the cell cost, whenever MLflow is written
    started_ms: int | None = None
    ended_ms: int | None = None
    importances: dict = field(default_factory=dict)  # parameter -> importance over the tuning trials
    # "run:budget" -> the trial chosen on validation at that budget's cap: {"trial", "arm", "number", "value",
    # "hyper"} ("trial" "defaults" when no trial has a value there)
    choices: dict = field(default_factory=dict)

    @property
    def mirrored(self) -> bool:
        """MLflow holds everything the storage records of the cell, and its cell run is finished."""
        return self.mlflow_finished and not self.mlflow_pending

    def eval_runs(self) -> dict[tuple, str]:
        """(track, tuning run, trial, seed) -> run id of every evaluation MLflow holds (as far as the storage
        knows)."""
        return {_parse_eval_key(k): v for k, v in self.evals.items() if v}

    def eval_scores(self) -> dict[tuple, dict]:
        """(track, tuning run, trial, seed) -> final values (test_loss, test_accuracy on classification sets,
        diverged, updates, seconds, final_train_loss, initial_val_loss, initial_test_loss), ``hyper`` and
        ``budgets`` of every evaluation."""
        return {_parse_eval_key(k): v for k, v in self.scores.items()}

    def evaluations(self) -> list[dict]:
        """Every evaluation MLflow holds, as the report reads them: track, tuning_run, trial, seed, budgets (the
        budgets whose choice it evaluates), run_id, final values and hyper."""
        scores, out = self.eval_scores(), []
        for key, run_id in sorted(self.eval_runs().items(), key=lambda kv: tuple(map(str, kv[0]))):
            track, run, trial, seed = key
            final = scores.get(key, {})
            out.append({"track": track, "tuning_run": run, "trial": trial, "seed": seed,
                        "budgets": list(final.get("budgets", ALL_BUDGETS)), "run_id": run_id,
                        "final": {k: v for k, v in final.items() if k not in ("hyper", "budgets")},
                        "hyper": final.get("hyper", {})})
        return out


ALL_BUDGETS = ("epochs", "updates", "seconds")  # what an evaluation of a sweep before per-budget choices served
DEFAULTS = "defaults"  # the "trial" of an evaluation with the registry's defaults (no trial chose them)


def eval_key(track: str, run: int, trial: str, seed: int) -> tuple:
    """An evaluation's key: its track, the tuning run and trial that chose its hyperparameters (run -1 and
    ``DEFAULTS`` on the default track), its seed."""
    return track, int(run), str(trial), int(seed)


def _eval_key(key: tuple) -> str:
    track, run, trial, seed = key
    return f"{track}:{int(run)}:{trial}:{int(seed)}"


def _parse_eval_key(key: str) -> tuple:
    """The key back; a sweep's from before tuning runs ("track:seed") as run 0's best (-1 on the default track)."""
    parts = key.split(":")
    if len(parts) == 2:
        track, seed = parts
        return eval_key(track, 0 if track == "tuned" else -1, "best" if track == "tuned" else DEFAULTS, int(seed))
    track, run, trial, seed = parts
    return eval_key(track, int(run), trial, int(seed))


def read(user_attrs: dict) -> CellRecord:
    """The record kept in a cell study's user attributes (a fresh one if the cell was never started)."""
    raw = user_attrs.get(RECORD) or {}
    known = {f.name for f in dataclasses.fields(CellRecord)}
    return CellRecord(**{k: v for k, v in raw.items() if k in known})


class Ledger:
    """A cell's record bound to its study, for the worker that holds the cell: reads once, writes on change.

    Only the holder of the cell's claim writes, so a read-modify-write of the record cannot race."""

    def __init__(self, study: optuna.Study):
        self.study = study
        self.refresh()

    def refresh(self) -> CellRecord:
        attrs = self.study.user_attrs
        self.record = read(attrs)
        self.kept = _eval_payloads(attrs)
        return self.record

    def update(self, **changes) -> None:
        self.record = dataclasses.replace(self.record, **changes)
        self.study.set_user_attr(RECORD, dataclasses.asdict(self.record))

    # --- evaluations: kept when done, mirrored when MLflow can take them ------------------------------------
    def keep_eval(self, key: tuple, payload: dict) -> None:
        """An evaluation is done: its payload goes into the storage at once, before MLflow sees it (one write)."""
        self.study.set_user_attr(EVAL + _eval_key(key), payload)
        self.kept[eval_key(*key)] = payload

    def has_eval(self, key: tuple) -> bool:
        return eval_key(*key) in self.kept or _eval_key(key) in self.record.evals

    def eval_payloads(self) -> dict[tuple, dict]:
        """(track, tuning run, trial, seed) -> payload of every evaluation the storage keeps."""
        return dict(self.kept)

    def pending_evals(self) -> dict[tuple, dict]:
        """(track, tuning run, trial, seed) -> payload of every evaluation MLflow does not hold yet."""
        held = self.record.eval_runs()
        return {k: p for k, p in self.kept.items() if k not in held}

    # --- what MLflow holds ------------------------------------------------------------------------------------
    def logged(self, trials: dict | None = None, evals: dict | None = None) -> None:
        """Runs MLflow now holds, in one write: ``trials`` (arm, number) -> run id (run 0's TPE trials: the only
        ones MLflow holds); ``evals`` (track, tuning run, trial, seed) -> (run id, final scores)."""
        trials, evals = trials or {}, evals or {}
        if not trials and not evals:
            return
        self.update(trial_runs={**self.record.trial_runs, **{f"{a}:{n}": r for (a, n), r in trials.items()}},
                    evals={**self.record.evals, **{_eval_key(k): r for k, (r, _) in evals.items()}},
                    scores={**self.record.scores, **{_eval_key(k): s for k, (_, s) in evals.items()}})

    def forget_runs(self, present: set | None = None) -> bool:
        """MLflow lost runs the storage records (its database was deleted or replaced, runs were deleted): forget
        their ids, so that they are written again. ``present``: the run ids MLflow still holds among the cell run's
        children; None when the cell run itself is gone (then every id goes). True if anything was forgotten."""
        keep = (lambda run_id: False) if present is None else (lambda run_id: run_id in present)
        trial_runs = {k: v for k, v in self.record.trial_runs.items() if keep(v)}
        evals = {k: v for k, v in self.record.evals.items() if v and keep(v)}
        cell_run_id = None if present is None else self.record.cell_run_id
        if (trial_runs, evals, cell_run_id) == (self.record.trial_runs, self.record.evals, self.record.cell_run_id):
            return False
        self.update(trial_runs=trial_runs, evals=evals, cell_run_id=cell_run_id, mlflow_finished=False,
                    mlflow_pending=self.record.done)
        return True

    def trial_run_id(self, trial: Trial, arm: str) -> str | None:
        """The MLflow run of a finished trial, once MLflow holds it."""
        return self.record.trial_runs.get(f"{arm}:{trial.number}")


def evaluations(user_attrs: dict) -> set[tuple]:
    """(track, tuning run, trial, seed) of every evaluation a cell study's attributes record as done."""
    return set(_eval_payloads(user_attrs)) | {_parse_eval_key(k) for k in read(user_attrs).evals}


def _eval_payloads(attrs: dict) -> dict[tuple, dict]:
    kept = {}
    for key, payload in attrs.items():
        for prefix in (LEGACY_PENDING, EVAL):
            if key.startswith(prefix):
                kept[_parse_eval_key(key[len(prefix):])] = payload
    return kept


# --- per-epoch columns, compactly -----------------------------------------------------------------------------
def pack_curves(curves: dict) -> dict:
    """Per-epoch columns at full precision, compactly: their float64 bytes grouped by byte position (signs and
    exponents together, then the mantissas), zlib-compressed, base64 text. Measured on a default sweep's
    curves.parquet: 6.2 characters a value, against 10.7 for plain base64 and 17.9 for JSON's shortest repr; NaN
    and inf are kept as they are (JSON has no spelling for them)."""
    names = sorted(curves)
    lengths = [len(curves[n]) for n in names]
    values = np.concatenate([np.asarray(curves[n], "<f8").ravel() for n in names]) if names else np.zeros(0)
    shuffled = values.view(np.uint8).reshape(-1, 8).T.tobytes()
    return {"columns": names, "lengths": lengths, "float64": base64.b64encode(zlib.compress(shuffled, 6)).decode()}


def unpack_curves(packed: dict) -> dict[str, list[float]]:
    """``pack_curves``' columns back, bit for bit; a payload written before packing (plain lists) as it is."""
    if "float64" not in packed:
        return {k: list(v) for k, v in packed.items()}
    shuffled = np.frombuffer(zlib.decompress(base64.b64decode(packed["float64"])), np.uint8)
    values = shuffled.reshape(8, -1).T.copy().view("<f8").ravel()
    out, start = {}, 0
    for name, n in zip(packed["columns"], packed["lengths"]):
        out[name] = values[start:start + n].tolist()
        start += n
    return out


# --- trials, for everyone who reads or writes them ------------------------------------------------------------
def mark_trial_worker(trial: Trial, worker: str) -> None:
    trial.set_user_attr(TRIAL_WORKER, worker)


def trial_worker(trial: Trial) -> str:
    return trial.user_attrs.get(TRIAL_WORKER, "")


def keep_trial_payload(trial: Trial, payload: dict) -> None:
    """Before a trial is told: what its MLflow run will hold, so that MLflow can be given it whenever it can take
    it (now, once the other worker has written, or after the server comes back, or after this worker died)."""
    trial.set_user_attr(TRIAL_PAYLOAD, payload)


def trial_payload(trial: Trial) -> dict | None:
    return trial.user_attrs.get(TRIAL_PAYLOAD)


def mark_trial_state(trial: Trial, state: str) -> None:
    trial.set_user_attr(TRIAL_STATE, state)


def trial_state(trial: Trial) -> str:
    """COMPLETE, PRUNED, FAIL or DIVERGED (a diverged trial is COMPLETE to Optuna, with its penalty as value)."""
    return trial.user_attrs.get(TRIAL_STATE, trial.state.name)


def retry_marker(number: int) -> dict:
    """The user attributes of a queued trial that retries trial ``number``'s parameters."""
    return {RETRY_OF: number}


def retry_of(trial: Trial) -> int | None:
    return trial.user_attrs.get(RETRY_OF)
