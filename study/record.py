"""The MLflow mirror of a cell. The Optuna storage is the source of truth; MLflow is what people browse.

Every trial and evaluation is written to MLflow as it finishes and its run id kept in the Optuna storage. If the
tracking server cannot be reached, the payload is kept in the Optuna storage instead and the sweep goes on;
``reconcile`` later writes what is missing and marks FAILED any MLflow run the storage does not record (written by
a worker that died before recording it), so that MLflow's counts always match Optuna's.

Where run ids live: a trial's in its ``mlflow_run_id`` attribute (set before the trial is told), or, when written
later by ``reconcile``, in the cell study's ``mlflow:<arm>:<number>`` attribute; an evaluation's in the cell study's
``eval:<track>:<seed>`` attribute as ``{"run_id": ...}`` or ``{"pending": payload}``.
"""
from __future__ import annotations

import os
import sys
import time

from study import tracking, tuning

# After a failed write, do not pay a timeout per trial: try again after this long (OPTSTUDY_MLFLOW_RETRY_SECONDS)
RETRY_AFTER_SECONDS = float(os.environ.get("OPTSTUDY_MLFLOW_RETRY_SECONDS", 30.0))


class Mirror:
    def __init__(self, ctx, cell: tuple, studies: dict):
        self.ctx, self.cell, self.studies = ctx, cell, studies
        self.main = studies["tpe"]
        self.tags = {"dataset": cell[0], "optimizer": cell[1], "batch_size": str(cell[2])}
        self.eval_val_loss: dict[tuple[str, int], list] = {}  # written by this process: no need to read them back

    # --- writing as we go -----------------------------------------------------------------------------------
    def _write(self, what: str, write):
        """Run one MLflow write; on failure remember that the server is away and return None."""
        if time.time() < self.ctx.tracking_down_until[0]:
            return None
        try:
            return write()
        except tracking.UNAVAILABLE as e:
            self.ctx.tracking_down_until[0] = time.time() + RETRY_AFTER_SECONDS
            print(f"warning: MLflow unavailable ({type(e).__name__}) while writing {what} of "
                  f"{'/'.join(map(str, self.cell))}; results are kept in the Optuna storage and will be logged "
                  f"when it is back", file=sys.stderr)
            return None

    def cell_run(self) -> str | None:
        run_id = self.main.user_attrs.get("cell_run_id")
        if run_id is None:
            run_id = self._write("the cell run", self._new_cell_run)
            if run_id is not None:
                self.main.set_user_attr("cell_run_id", run_id)
        return run_id

    def _new_cell_run(self) -> str:
        """A fresh cell run. A cell run already in MLflow but unknown to the storage was started by a worker that
        died before recording it: it is an orphan, marked FAILED so the cell is never counted twice."""
        same_cell = " and ".join(f"tags.{k} = '{v}'" for k, v in {"role": "cell", **self.tags}.items())
        for run in tracking.runs(self.ctx.mlflow, self.ctx.experiment, same_cell):
            if run.info.status != "FAILED":
                tracking.end_run(self.ctx.mlflow, run.info.run_id, "FAILED")
        return tracking.start_run(self.ctx.mlflow, self.ctx.experiment, "/".join(map(str, self.cell)),
                                  {"role": "cell", **self.tags})

    def trial(self, trial, arm: str, state: str, hyper: dict, curves: dict, final: dict) -> None:
        """Before the trial is told: its run id, or its payload when MLflow is away, goes into its attributes."""
        payload = {"arm": arm, "number": trial.number, "state": state, "hyper": hyper,
                   "curves": {k: [float(x) for x in v] for k, v in curves.items()}, "final": final}
        with self.ctx.timed("mlflow"):
            run_id = self._write(f"trial {trial.number}", lambda: self._log_trial(payload))
        if run_id is not None:
            trial.set_user_attr("mlflow_run_id", run_id)
        else:
            trial.set_user_attr("mlflow_payload", payload)
            self.main.set_user_attr("mlflow_pending", True)

    def _log_trial(self, p: dict) -> str:
        parent = self.cell_run()
        if parent is None:
            raise tracking.Unavailable("no cell run")
        return tracking.log_run(
            self.ctx.mlflow, self.ctx.experiment, f"trial-{p['number']}" + ("-random" if p["arm"] == "random" else ""),
            {"role": "trial", **self.tags, "trial_number": p["number"], "state": p["state"], "arm": p["arm"]},
            params=p["hyper"], curves=p["curves"], final=p["final"], parent_run_id=parent)

    def evaluation(self, track: str, seed: int, hyper: dict, curves: dict, final: dict, tags: dict) -> None:
        payload = {"track": track, "seed": seed, "hyper": hyper, "final": final, "tags": tags,
                   "curves": {k: [float(x) for x in v] for k, v in curves.items()}}
        self.eval_val_loss[(track, seed)] = payload["curves"].get("val_loss", [])
        with self.ctx.timed("mlflow"):
            run_id = self._write(f"evaluation {track}/{seed}", lambda: self._log_eval(payload))
        if run_id is not None:
            self.main.set_user_attr(f"eval:{track}:{seed}", {"run_id": run_id})
        else:
            self.main.set_user_attr(f"eval:{track}:{seed}", {"pending": payload})
            self.main.set_user_attr("mlflow_pending", True)

    def _log_eval(self, p: dict) -> str:
        parent = self.cell_run()
        if parent is None:
            raise tracking.Unavailable("no cell run")
        return tracking.log_run(
            self.ctx.mlflow, self.ctx.experiment, f"eval-{p['track']}-{p['seed']}",
            {"role": "eval", **self.tags, "track": p["track"], "seed": p["seed"], **p["tags"]},
            params=p["hyper"], curves=p["curves"], final=p["final"], parent_run_id=parent)

    def finish(self, artifacts: list, final: dict, dataset_input: dict, params: dict) -> bool:
        parent = self.cell_run()
        done = parent is not None and self._write("the cell's artifacts", lambda: tracking.finish_cell_run(
            self.ctx.mlflow, parent, artifacts, final, dataset_input, params) or True)
        self.main.set_user_attr("mlflow_finished", bool(done))
        return bool(done)

    def interrupted(self) -> None:
        parent = self.main.user_attrs.get("cell_run_id")
        if parent is not None:
            self._write("the cell's status", lambda: tracking.end_run(self.ctx.mlflow, parent, "KILLED"))

    # --- making MLflow match the storage ----------------------------------------------------------------------
    def recorded_runs(self) -> dict:
        """run id -> what it records, for every trial and evaluation the Optuna storage holds."""
        attrs = self.main.user_attrs
        found = {}
        for arm, study in self.studies.items():
            for t in tuning.finished(study):
                run_id = t.user_attrs.get("mlflow_run_id") or attrs.get(f"mlflow:{arm}:{t.number}")
                if run_id:
                    found[run_id] = ("trial", arm, t.number)
        for key, value in attrs.items():
            if key.startswith("eval:") and isinstance(value, dict) and "run_id" in value:
                found[value["run_id"]] = ("eval", key)
        return found

    def reconcile(self) -> bool:
        """Write what MLflow is missing, fail its orphans; True when MLflow now matches the storage."""
        if self.cell_run() is None:
            return False
        ok = True
        for arm, study in self.studies.items():
            for t in tuning.finished(study):
                payload = t.user_attrs.get("mlflow_payload")
                if payload and not t.user_attrs.get("mlflow_run_id") \
                        and not self.main.user_attrs.get(f"mlflow:{arm}:{t.number}"):
                    run_id = self._write(f"trial {t.number}", lambda: self._log_trial(payload))
                    ok &= run_id is not None
                    if run_id:
                        self.main.set_user_attr(f"mlflow:{arm}:{t.number}", run_id)
        for key, value in list(self.main.user_attrs.items()):
            if key.startswith("eval:") and isinstance(value, dict) and "pending" in value:
                run_id = self._write(f"evaluation {key}", lambda: self._log_eval(value["pending"]))
                ok &= run_id is not None
                if run_id:
                    self.main.set_user_attr(key, {"run_id": run_id})
        keep = set(self.recorded_runs())
        ok &= self._write("orphan marks", lambda: tracking.fail_orphans(
            self.ctx.mlflow, self.ctx.experiment, self.cell_run(), keep) is not None) is not None
        if ok:
            self.main.set_user_attr("mlflow_pending", False)
        return ok
