"""The MLflow mirror of a cell. The Optuna storage is the source of truth; MLflow is what people browse.

Every trial and evaluation is kept in the Optuna storage with its whole payload as it finishes (a trial before it
is told, an evaluation at once), queued for MLflow, and written as soon as the store can take it: at once when no
other worker is writing to the SQLite store, else after this worker's next batch of training (waiting for the
other writer would idle a core), and at the latest when the cell finishes; its run id goes into the cell's ledger
once MLflow holds it. If the tracking server cannot be reached, what is queued stays in the Optuna storage and the
sweep goes on; ``reconcile`` later writes what is missing and marks FAILED any MLflow run the storage does not
record (written by a worker that died before recording it), so that MLflow's counts always match Optuna's. If
MLflow lost runs the storage records (its database deleted or replaced), ``verify`` finds out and they are written
again from their payloads: the mirror can always be rebuilt from the storage alone.

What each run carries (DESIGN §3): a trial its validation loss per epoch (the curve its pruning acted on; Optuna's
dashboard draws the same intermediate values) and final values; an evaluation its four curves per epoch and its
test scores, tagged with its track, seed, tuning run and the budgets it serves. ``updates`` and ``seconds`` are final
values: per epoch they are straight lines. Only run 0's TPE trials are MLflow runs (issue 18: MLflow's SQLite store
costs about 9 ms a run); the random arm's and the repeat tuning runs' trials live in the Optuna storage (their
payloads), in curves.parquet and in the cell run's ``trials.parquet``. Every checkpoint value of every run, trials
and evaluations alike, goes at full precision into the cell run's ``curves.parquet``, which the report reads: one
row per run and checkpoint (every epoch end, and inside epochs on the grid of ``study.core.train.checkpoint_grid``).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from study.core import data
from study.sweep import names, tables, tracking, tuning
from study.sweep.context import Context
from study.sweep.tuning import ledger

TRIAL_CURVES = ("val_loss",)  # per epoch in MLflow
EVAL_CURVES = ("train_loss", "val_loss", "val_accuracy", "grad_norm")

EXPERIMENT_NOTE = """\
**One run per cell** (dataset x optimizer x batch size), tag `role = 'cell'`, named `dataset/optimizer/batch`
(a dataset read from a CSV file is named by the file's stem; its path and digest are the cell run's dataset input).
Filter the table with `tags.role = 'cell'` to list the cells alone (100 to a page) and sort them by their summary
metrics: `best_val_loss` (best tuning trial), `tuned_test_loss` / `default_test_loss` and, on classification sets,
`tuned_test_accuracy` / `default_test_accuracy` (means over the evaluation seeds), `diverged_share` (share of the
cell's tuning trials that diverged) and `seconds_per_epoch` (one network trained alone on this machine).

**Trials and evaluations** are the cell run's children: expand a cell (the + beside its name) or open it, or filter
on them directly, e.g. `tags.role = 'eval' and tags.track = 'tuned' and tags.dataset = 'iris'` or
`tags.role = 'trial' and tags.optimizer = 'adam'`. Trials (the first TPE search's only) carry `trial_number`, `state`
(COMPLETE, PRUNED, FAIL, DIVERGED) and their validation loss per epoch; evaluations carry `track` (tuned / default),
`seed`, `tuning_run` (which TPE search chose the hyperparameters; -1 on the default track) and `budget` (the budgets
whose choice they are, e.g. `epochs,updates`), their curves and test scores. Each cell run's artifacts:
`learning_curves.png`, `optuna_history.png`, `optuna_importances.png`, `config.yaml`, `curves.parquet` (every
checkpoint value of every trial and evaluation) and `trials.parquet` (every tuning trial of every search and arm,
the random arm's and the repeat searches' included, with its final test loss).

The report of the sweep is the run tagged `role = 'report'`."""


def cell_filter() -> str:
    return names.tag_filter(role=names.CELL)


def _scores(payload: dict) -> dict:
    """What the cell's ledger keeps of an evaluation: every final value, the hyperparameters it ran with and the
    budgets it serves."""
    return {**payload["final"], "hyper": dict(payload["hyper"]),
            "budgets": list(payload.get("budgets", ledger.ALL_BUDGETS))}


def in_mlflow(run: int, arm: str) -> bool:
    """Whether a tuning run's trials are MLflow runs: the first TPE search's only."""
    return run == 0 and arm == names.TPE


class Mirror:
    def __init__(self, ctx: Context, cell: tuple, studies: dict, book: ledger.Ledger):
        self.ctx, self.cell, self.studies, self.book = ctx, cell, studies, book
        # what a person filters the UI with and the report reads back: a CSV dataset by its stem
        self.tags = {names.DATASET: data.display_name(cell[0]), names.OPTIMIZER: cell[1],
                     names.BATCH_SIZE: str(cell[2])}
        # ("trial", run, arm, number) | ("eval", track, run, trial, seed) -> {"curves": per-epoch values,
        # "checkpoints": checkpoint columns}
        self.curves: dict[tuple, dict] = {}
        self.queue: list[tuple] = []  # ("trial", (arm, number) | "eval", eval key, payload) not yet in MLflow
        # a write that failed half-way (the server or its database went away between creating a run and ending it)
        # may have left a run that the retry wrote again: the cell is reconciled before it finishes
        self.write_failed = False
        self.seen_cell_run = None  # the cell run as ``verify`` found it in MLflow, if it did

    # --- writing as we go -----------------------------------------------------------------------------------
    def _write(self, what: str, write):
        """Run one MLflow write; on failure remember that the server is away and return None."""
        if self.ctx.outage.away():
            return None
        try:
            return write()
        except tracking.UNAVAILABLE as e:
            self.ctx.outage.began()
            self.write_failed = True
            print(f"warning: MLflow unavailable ({type(e).__name__}) while writing {what} of "
                  f"{data.display_key(self.cell)}; results are kept in the Optuna storage and will be logged "
                  f"when it is back", file=sys.stderr)
            return None

    def cell_run(self) -> str | None:
        run_id = self.book.record.cell_run_id
        if run_id is None:
            run_id = self._write("the cell run", self._new_cell_run)
            if run_id is not None:
                self.book.update(cell_run_id=run_id)
        return run_id

    def _new_cell_run(self) -> str:
        """A fresh cell run. A cell run already in MLflow but unknown to the storage was started by a worker that
        died before recording it: it is an orphan, marked FAILED so the cell is never counted twice."""
        same_cell = names.tag_filter(**{names.ROLE: names.CELL, **self.tags})
        for run in tracking.runs(self.ctx.mlflow, self.ctx.experiment, same_cell):
            if run.info.status != "FAILED":
                tracking.end_run(self.ctx.mlflow, run.info.run_id, "FAILED")
        return tracking.start_run(self.ctx.mlflow, self.ctx.experiment, data.display_key(self.cell),
                                  {names.ROLE: names.CELL, **self.tags}, start_time=self.book.record.started_ms)

    def trial(self, trial, run: int, arm: str, state: str, hyper: dict, curves: dict, checkpoints: dict,
              final: dict) -> None:
        """Before the trial is told: its payload (every per-epoch and checkpoint column) goes into its record, and
        (run 0's TPE trials) into the queue for MLflow."""
        curves, checkpoints = _columns(curves), _columns(checkpoints)
        self.curves[(names.TRIAL, run, arm, trial.number)] = {"curves": curves, "checkpoints": checkpoints}
        payload = {"arm": arm, "tuning_run": run, "number": trial.number, "state": state, "hyper": hyper,
                   "curves": ledger.pack_curves(curves), "checkpoints": ledger.pack_curves(checkpoints),
                   "final": final}
        ledger.keep_trial_payload(trial, payload)
        if in_mlflow(run, arm):
            self.queue.append((names.TRIAL, (arm, trial.number), payload))

    def evaluation(self, key: tuple, hyper: dict, budgets: list, curves: dict, checkpoints: dict, final: dict,
                   tags: dict) -> None:
        """A finished evaluation (``key``: track, tuning run, trial, seed): its payload (every per-epoch and
        checkpoint column, the test curve included) into the storage, then into the queue for MLflow. From here on
        it is done, whatever happens to MLflow or to this worker."""
        key = ledger.eval_key(*key)
        curves, checkpoints = _columns(curves), _columns(checkpoints)
        self.curves[(names.EVAL, *key)] = {"curves": curves, "checkpoints": checkpoints}
        track, run, trial, seed = key
        payload = {"track": track, "tuning_run": run, "trial": trial, "seed": seed, "budgets": list(budgets),
                   "hyper": hyper, "final": final, "tags": tags, "curves": ledger.pack_curves(curves),
                   "checkpoints": ledger.pack_curves(checkpoints)}
        with self.ctx.timed("optuna"):
            self.book.keep_eval(key, payload)
        self.queue.append((names.EVAL, key, payload))

    def flush(self, wait: bool = True, deadline: float | None = None) -> bool:
        """Write what is queued, at once if the store is free or once it is (``wait``), until ``deadline`` (a
        ``time.monotonic()`` value); True when nothing is left. What MLflow took is recorded in the ledger in one
        write."""
        if not self.queue:
            return True
        trials, evals = {}, {}
        with self.ctx.timed("mlflow"), tracking.writer_turn(self.ctx.mlflow, wait) as ours:
            while ours and self.queue and (deadline is None or time.monotonic() < deadline):
                kind, key, payload = self.queue[0]
                log = self._log_trial if kind == names.TRIAL else self._log_eval
                run_id = self._write(f"{kind} {'/'.join(map(str, key))}", lambda: log(payload))
                if run_id is None:
                    break
                self.queue.pop(0)
                if kind == names.TRIAL:
                    trials[key] = run_id
                else:
                    evals[key] = (run_id, _scores(payload))
        with self.ctx.timed("optuna"):
            self.book.logged(trials, evals)
        return not self.queue

    def keep_unlogged(self) -> None:
        """MLflow is away at the cell's end: what is queued waits in the storage, where every payload is already."""
        self.queue = []

    def _log_trial(self, p: dict) -> str:
        parent = self.cell_run()
        if parent is None:
            raise tracking.Unavailable("no cell run")
        return tracking.log_run(
            self.ctx.mlflow, self.ctx.experiment,
            f"trial-{p['number']}" + ("-random" if p["arm"] == names.RANDOM else ""),
            {names.ROLE: names.TRIAL, **self.tags, names.TRIAL_NUMBER: p["number"], names.STATE: p["state"],
             names.ARM: p["arm"], names.TUNING_RUN: p.get("tuning_run", 0),
             **({names.SCORED_ON_TEST: names.TRUE} if "test_loss" in p["final"] else {})},
            params=p["hyper"], curves=_logged(p["curves"], TRIAL_CURVES), final=p["final"], parent_run_id=parent)

    def _log_eval(self, p: dict) -> str:
        parent = self.cell_run()
        if parent is None:
            raise tracking.Unavailable("no cell run")
        run = p.get("tuning_run", 0 if p["track"] == names.TUNED else -1)
        budgets = ",".join(p.get("budgets", ledger.ALL_BUDGETS))
        name = f"eval-{p['track']}-{p['seed']}" if p["track"] == names.DEFAULT else \
            f"eval-{p['track']}-r{run}-{budgets}-{p['seed']}"
        return tracking.log_run(
            self.ctx.mlflow, self.ctx.experiment, name,
            {names.ROLE: names.EVAL, **self.tags, names.TRACK: p["track"], names.SEED: p["seed"],
             names.TUNING_RUN: run, names.BUDGET: budgets, **p["tags"]},
            params=p["hyper"], curves=_logged(p["curves"], EVAL_CURVES), final=p["final"], parent_run_id=parent)

    def finish(self, artifact_dir: Path, summary: dict, dataset_input: dict, params: dict) -> bool:
        """The cell run's artifacts and summary, then FINISHED; False if MLflow could not take them. A cell run
        finished before (some of its children were written again) gets only what it lacks: its metrics' histories
        and its inputs stay as they were."""
        parent = self.cell_run()
        seen = self.seen_cell_run if self.seen_cell_run and self.seen_cell_run.info.run_id == parent else None
        if seen is not None:
            summary = {k: v for k, v in summary.items() if seen.data.metrics.get(k) != v}
            params = {k: v for k, v in params.items() if k not in seen.data.params}
            dataset_input = None if seen.inputs.dataset_inputs else dataset_input
        return parent is not None and bool(self._write("the cell's artifacts", lambda: tracking.finish_cell_run(
            self.ctx.mlflow, parent, artifact_dir, summary, dataset_input, params,
            end_time=self.book.record.ended_ms) or True))

    def interrupted(self) -> None:
        parent = self.book.record.cell_run_id
        if parent is not None:
            self._write("the cell's status", lambda: tracking.end_run(self.ctx.mlflow, parent, "KILLED"))

    # --- making MLflow match the storage ----------------------------------------------------------------------
    def recorded_runs(self) -> dict:
        """run id -> what it records, for every trial and evaluation the Optuna storage holds."""
        found = {}
        for (run, arm), study in self.studies.items():
            for t in tuning.finished(study) if in_mlflow(run, arm) else ():
                run_id = self.book.trial_run_id(t, arm)
                if run_id:
                    found[run_id] = (names.TRIAL, arm, t.number)
        for key, run_id in self.book.record.eval_runs().items():
            found[run_id] = (names.EVAL, *key)
        return found

    def queue_missing(self) -> None:
        """Queue everything the storage holds that MLflow does not (a resumed cell's trials, evaluations that
        waited for the server), this process's own queue included, each once."""
        self.queue = [q for q in self.queue if q[0] == names.EVAL]  # trials are queued from their records below
        for (run, arm), study in self.studies.items():
            for t in tuning.finished(study) if in_mlflow(run, arm) else ():
                payload = ledger.trial_payload(t)
                if payload and not self.book.trial_run_id(t, arm):
                    self.queue.append((names.TRIAL, (arm, t.number), payload))
        pending = self.book.pending_evals()
        self.queue += [(names.EVAL, key, payload) for key, payload in pending.items()
                       if not any(q[0] == names.EVAL and q[1] == key for q in self.queue)]

    def verify(self) -> bool:
        """Does MLflow still hold the runs the storage records of this cell (its cell run, and each child as a
        FINISHED run)? Two searches. Whatever it lost is forgotten in the ledger, to be written again from the
        payloads; True if anything was (False too when MLflow cannot be asked now: then nothing changes)."""
        run_id = self.book.record.cell_run_id
        if run_id is None:
            return False
        found = self._write("a look at the cell's runs",
                            lambda: tracking.run_family(self.ctx.mlflow, self.ctx.experiment, run_id))
        if found is None:
            return False
        cell_run, children = found
        self.seen_cell_run = cell_run
        if cell_run is None or cell_run.info.status == "FAILED":  # gone, or failed as an orphan: a new one
            present = None
        else:
            present = {r.info.run_id for r in children if r.info.status == "FINISHED"}
        with self.ctx.timed("optuna"):
            forgot = self.book.forget_runs(present)
            if not forgot and self.book.record.mlflow_finished and cell_run.info.status != "FINISHED":
                self.book.update(mlflow_finished=False, mlflow_pending=self.book.record.done)
                forgot = True
        return forgot

    def reconcile(self) -> bool:
        """Write what MLflow is missing, fail its orphans; True when MLflow now matches the storage."""
        if self.cell_run() is None:
            return False
        self.queue_missing()
        ok = self.flush(wait=True)
        keep = set(self.recorded_runs())
        ok &= self._write("orphan marks", lambda: tracking.fail_orphans(
            self.ctx.mlflow, self.ctx.experiment, self.cell_run(), keep) is not None) is not None
        if ok and self.book.record.mlflow_pending:
            self.book.update(mlflow_pending=False)
        return ok

    # --- curves.parquet and trials.parquet -------------------------------------------------------------------
    def finished_trials(self):
        """(run, arm, trial) of every finished trial of the cell, every tuning run and arm."""
        return [(run, arm, t) for (run, arm), study in self.studies.items() for t in tuning.finished(study)]

    def runs(self) -> dict:
        """Every finished trial's and evaluation's key (as in ``self.curves``) -> MLflow run id ("" until MLflow
        holds it, and for the trials that are no MLflow runs)."""
        runs = {(names.TRIAL, run, arm, t.number): (self.book.trial_run_id(t, arm) or "") if in_mlflow(run, arm)
                else "" for run, arm, t in self.finished_trials()}
        held = self.book.record.eval_runs()
        for key in {**held, **self.book.eval_payloads()}:
            runs[(names.EVAL, *key)] = held.get(key, "")
        return runs

    def gather_curves(self, updates_per_epoch: int) -> None:
        """Every run's per-epoch and checkpoint values in memory: this process's own, and a resumed cell's earlier
        runs from their payloads in the storage. Only a sweep recorded before payloads held every column reads
        MLflow (which has no per-epoch seconds, and no test curve)."""
        runs = self.runs()
        for run, arm, t in self.finished_trials():
            key, payload = (names.TRIAL, run, arm, t.number), ledger.trial_payload(t)
            if key not in self.curves and payload:
                self.curves[key] = tables.unpacked(payload)
        for key, payload in self.book.eval_payloads().items():
            if (names.EVAL, *key) not in self.curves:
                self.curves[(names.EVAL, *key)] = tables.unpacked(payload)
        missing = {k: run_id for k, run_id in runs.items() if k not in self.curves and run_id}
        if missing:
            self.curves.update(self._curves_from_mlflow(missing, updates_per_epoch))

    def curve_table(self, updates_per_epoch: int):
        """curves.parquet (``study.sweep.tables.curve_table``)."""
        return tables.curve_table(self, updates_per_epoch)

    def trial_table(self):
        """trials.parquet (``study.sweep.tables.trial_table``)."""
        return tables.trial_table(self)

    def _curves_from_mlflow(self, runs: dict, updates_per_epoch: int) -> dict:
        out = {}
        try:
            for key, run_id in runs.items():
                wanted = TRIAL_CURVES if key[0] == names.TRIAL else EVAL_CURVES
                curves = {}
                for name in wanted:
                    steps, values = tracking.metric_histories(self.ctx.mlflow, [run_id], name)[run_id]
                    if steps:
                        column = np.full(max(steps), np.nan)
                        column[np.asarray(steps) - 1] = values
                        curves[name] = column.tolist()
                epochs = max((len(v) for v in curves.values()), default=0)
                curves["updates"] = [float(updates_per_epoch * (e + 1)) for e in range(epochs)]
                out[key] = {"curves": curves, "checkpoints": None}
        except tracking.UNAVAILABLE:
            pass
        return out


def _columns(curves: dict) -> dict[str, list[float]]:
    return {k: [float(x) for x in v] for k, v in curves.items()}


def _logged(packed: dict, names: tuple) -> dict:
    """The per-epoch columns of a payload that MLflow shows as curves."""
    curves = ledger.unpack_curves(packed)
    return {k: curves[k] for k in names if k in curves}
