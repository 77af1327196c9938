"""What a person sees while a sweep runs and when it ends: one progress bar, and a summary of where everything is."""
from __future__ import annotations

import math
import sys
import time

from study.core import data
from study.schema.sweep import Sweep
from study.sweep import names


PLAIN_SECONDS = 30.0  # where stderr is a file (a log), one plain progress line this often, and one at the end


class Progress:
    """The sweep's progress over the whole sweep: trials done, cells done, the last finished cell's best value. On a
    terminal one bar (tqdm); otherwise (output sent to a log file) one plain line every ``PLAIN_SECONDS`` and at
    the end, with no carriage returns or other control characters."""

    def __init__(self, cfg: Sweep, done_trials: int, done_cells: int, stream=None, interactive: bool | None = None):
        arms = cfg.profile.tuning_runs + (1 if cfg.profile.random_arm else 0)  # TPE runs and the random arm
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.cells_total, self.cells_done = len(cfg.cells()), done_cells
        self.total, self.done, self.first = self.cells_total * cfg.profile.trials * arms, done_trials, done_trials
        self.started = self.last_line = time.monotonic()
        self.best: dict = {}
        self.last = ""
        self.bar = None
        if self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=done_trials, unit="trial", dynamic_ncols=True,
                            file=self.stream, smoothing=0.05, mininterval=0.5)
        self._postfix()

    def _postfix(self, last: str = ""):
        self.last = last
        if self.bar is not None:
            self.bar.set_postfix_str(f"cells {self.cells_done}/{self.cells_total}{last}", refresh=False)

    def line(self) -> str:
        """The plain progress line: counts, elapsed and (from this run's pace) remaining time."""
        elapsed = time.monotonic() - self.started
        made = self.done - self.first
        remaining = (self.total - self.done) * elapsed / made if made > 0 else math.nan
        share = self.done / self.total if self.total else 1.0
        left = _clock(remaining) if math.isfinite(remaining) else "?"
        return (f"progress: {self.done}/{self.total} trials ({share:.0%}), cells {self.cells_done}/"
                f"{self.cells_total}, elapsed {_clock(elapsed)}, remaining about {left}{self.last}")

    def _plain(self, force: bool = False):
        now = time.monotonic()
        if self.bar is None and (force or now - self.last_line >= PLAIN_SECONDS):
            self.last_line = now
            print(self.line(), file=self.stream, flush=True)

    def __call__(self, event: str, info: dict):
        cell = data.display_key(info.get("cell", ()))
        if event == "trial":
            self.done += 1
            if self.bar is not None:
                self.bar.update(1)
            if info["value"] is not None and info["state"] == names.COMPLETE:
                self.best[cell] = min(self.best.get(cell, float("inf")), info["value"])
            self._postfix(f" | {cell} best val {self.best.get(cell, float('nan')):.4g}")
        elif event == "cell":
            self.cells_done += 1
            self._postfix(f" | {cell} done")
        elif event == "mirrored":  # a cell done earlier whose MLflow runs were written (again)
            self._postfix(f" | {cell} written to MLflow")
        if self.bar is not None and event in ("cell", "mirrored"):
            self.bar.refresh()
        self._plain()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        else:
            self._plain(force=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def summary(cfg: Sweep, runs_dir, storage, timing: dict) -> str:
    from study.sweep import record, sweep, tracking, tuning

    counted = sweep.counts(cfg, storage)
    mlflow_uri = tracking.mask_url(tracking.tracking_uri(runs_dir))
    served = mlflow_uri.startswith(("http://", "https://"))
    worker_seconds = max(timing["wall"] * timing["workers"], 1e-9)
    mlflow_client = tracking.client(runs_dir)
    found = mlflow_client.get_experiment_by_name(cfg.name)
    cells_url = tracking.runs_table_url(mlflow_uri if served else "http://127.0.0.1:5000", found.experiment_id,
                                        record.cell_filter()) if found else ""
    lines = [
        f"sweep {cfg.name!r} (config {cfg.hash}): {counted['cells_done']}/{counted['cells']} cells done",
        "  trials: " + ", ".join(f"{k} {v}" for k, v in sorted(counted["trials"].items())) if counted["trials"]
        else "  trials: none",
        f"  evaluations: {counted['evals']}",
        *mlflow_lines(counted, sweep.mlflow_counts(mlflow_client, found.experiment_id) if found else None),
        f"  wall time: {timing['wall']:.1f} s with {timing['workers']} worker(s); "
        f"share in MLflow {timing['seconds']['mlflow'] / worker_seconds:.1%}, "
        f"in Optuna {timing['seconds']['optuna'] / worker_seconds:.1%}; "
        f"{timing.get('network_epochs', 0) / max(timing['wall'], 1e-9):,.0f} network-epochs/s",
        f"  MLflow store:  {mlflow_uri}   "
        + ("(open it in a browser: the server serves the UI)" if served else "(open: make ui)"),
        f"  cell runs:     {cells_url}" + ("" if served else "   (after make ui)"),
        f"  Optuna store:  {tracking.mask_url(tuning.storage_url(runs_dir, cfg.name))}   (open: make dashboard)",
        f"  report:        make report  ->  reports/{cfg.name}/report.html",
    ]
    return "\n".join(lines)


def mlflow_lines(counted: dict, held: dict | None) -> list[str]:
    """What MLflow holds, from MLflow itself, beside what the Optuna storage holds: a loss shows."""
    if held is None:
        return ["  in MLflow: no experiment for this sweep; run the same command again to write it"]
    cells = held["cells"]
    others = ", ".join(f"{n} {status}" for status, n in sorted(cells.items()) if status != "FINISHED")
    lines = [f"  in MLflow: {cells.get('FINISHED', 0)}/{counted['cells']} cell runs FINISHED"
             + (f" ({others})" if others else "")
             + f"; {held['trial_runs']} trial runs and {held['eval_runs']} evaluation runs in them"
             + (f" ({held['uncounted']} cell runs of an older version not counted)" if held.get("uncounted") else "")]
    if cells.get("FINISHED", 0) < counted["cells_done"] or held["trial_runs"] < counted["trial_runs"] \
            or held["eval_runs"] < counted["eval_runs"]:
        lines.append("  MLflow lacks runs the Optuna storage holds: run the same command again to write them")
    return lines
