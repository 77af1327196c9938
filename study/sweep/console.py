"""What a person sees while a sweep runs and when it ends: one progress bar, and a summary of where everything is."""
from __future__ import annotations

import sys

class Progress:
    """One bar over the whole sweep: trials done, cells done, the last finished cell's best value."""

    def __init__(self, cfg, done_trials: int, done_cells: int):
        from tqdm import tqdm

        arms = 2 if cfg.random_arm else 1
        self.cells_total, self.cells_done = len(cfg.cells()), done_cells
        self.bar = tqdm(total=self.cells_total * cfg.trials * arms, initial=done_trials, unit="trial",
                        dynamic_ncols=True, file=sys.stderr, smoothing=0.05, mininterval=0.5)
        self.best: dict = {}
        self._postfix()

    def _postfix(self, last: str = ""):
        self.bar.set_postfix_str(f"cells {self.cells_done}/{self.cells_total}{last}", refresh=False)

    def __call__(self, event: str, info: dict):
        cell = "/".join(map(str, info.get("cell", ())))
        if event == "trial":
            self.bar.update(1)
            if info["value"] is not None and info["state"] == "COMPLETE":
                self.best[cell] = min(self.best.get(cell, float("inf")), info["value"])
            self._postfix(f" | {cell} best val {self.best.get(cell, float('nan')):.4g}")
        elif event == "cell":
            self.cells_done += 1
            self._postfix(f" | {cell} done")
            self.bar.refresh()

    def close(self):
        self.bar.close()


def summary(cfg, runs_dir, storage, timing) -> str:
    from study.sweep import record, sweep, tracking, tuning

    counted = sweep.counts(cfg, storage)
    mlflow_uri = tracking.mask_url(tracking.tracking_uri(runs_dir))
    served = mlflow_uri.startswith(("http://", "https://"))
    worker_seconds = max(timing["wall"] * timing["workers"], 1e-9)
    found = tracking.client(runs_dir).get_experiment_by_name(cfg.name)
    cells_url = tracking.runs_table_url(mlflow_uri if served else "http://127.0.0.1:5000", found.experiment_id,
                                        record.cell_filter()) if found else ""
    lines = [
        f"sweep {cfg.name!r} (config {cfg.hash}): {counted['cells_done']}/{counted['cells']} cells done",
        "  trials: " + ", ".join(f"{k} {v}" for k, v in sorted(counted["trials"].items())) if counted["trials"]
        else "  trials: none",
        f"  evaluation runs: {counted['evals']}",
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
