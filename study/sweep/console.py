"""What a person sees while a sweep runs and when it ends: one progress bar, and a summary of where everything is."""
from __future__ import annotations

import sys

from study.schema.sweep import Sweep
from study.sweep import names


class Progress:
    """One bar over the whole sweep: trials done, cells done, the last finished cell's best value."""

    def __init__(self, cfg: Sweep, done_trials: int, done_cells: int):
        from tqdm import tqdm

        arms = 2 if cfg.profile.random_arm else 1
        self.cells_total, self.cells_done = len(cfg.cells()), done_cells
        self.bar = tqdm(total=self.cells_total * cfg.profile.trials * arms, initial=done_trials, unit="trial",
                        dynamic_ncols=True, file=sys.stderr, smoothing=0.05, mininterval=0.5)
        self.best: dict = {}
        self._postfix()

    def _postfix(self, last: str = ""):
        self.bar.set_postfix_str(f"cells {self.cells_done}/{self.cells_total}{last}", refresh=False)

    def __call__(self, event: str, info: dict):
        cell = "/".join(map(str, info.get("cell", ())))
        if event == "trial":
            self.bar.update(1)
            if info["value"] is not None and info["state"] == names.COMPLETE:
                self.best[cell] = min(self.best.get(cell, float("inf")), info["value"])
            self._postfix(f" | {cell} best val {self.best.get(cell, float('nan')):.4g}")
        elif event == "cell":
            self.cells_done += 1
            self._postfix(f" | {cell} done")
            self.bar.refresh()
        elif event == "mirrored":  # a cell done earlier whose MLflow runs were written (again)
            self._postfix(f" | {cell} written to MLflow")
            self.bar.refresh()

    def close(self):
        self.bar.close()


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
