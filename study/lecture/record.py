"""The lecture's results as MLflow runs and as a table for the terminal."""
from __future__ import annotations

import tempfile
from pathlib import Path

from study.lecture import toy

EXPERIMENT = "lecture"
LECTURE_RUNS = "tags.role = 'lecture'"


def log_to_mlflow(client, results: toy.LectureResults, artifacts: list[Path], runs_dir: Path) -> tuple[int, int]:
    """One run per trajectory in the experiment `lecture`, replacing the previous ones; (logged, replaced).

    Each run carries its own rows of the CSV (trajectory.csv) and the lecture's other outputs (``artifacts``: the
    figures and claims.json), so any run opened in the UI shows the pictures and the claims' numbers. The old runs
    are deleted only once the new ones are in: a failure midway loses nothing.
    """
    from study.sweep import tracking  # MLflow takes seconds to import: only once there is something to log

    experiment = tracking.experiment_id(client, EXPERIMENT, runs_dir)
    previous = tracking.runs(client, experiment, LECTURE_RUNS)
    with tempfile.TemporaryDirectory() as tmp:
        for t in results.trajectories:
            own_rows = toy.write_trajectories_csv(Path(tmp) / "trajectory.csv", [t])
            tracking.log_run(client, experiment, f"{t.optimizer} batch={t.batch_size}",
                             tags={"role": "lecture", "dataset": "toy", "optimizer": t.optimizer,
                                   "batch_size": t.batch_size},
                             params=t.hyper, curves={"loss": t.epoch_losses()}, artifacts=[own_rows, *artifacts])
    return len(results.trajectories), tracking.replace_runs(client, previous)


def summary(results: toy.LectureResults) -> str:
    """Where each trajectory ends and the first epoch its error is below 1e-3."""
    lines = [f"{'optimizer':<10} {'batch':>5} {'updates':>7} {'w':>20} {'b':>20} {'loss':>10}  first epoch < 1e-3"]
    for t in results.trajectories:
        below = t.epoch_losses() < 1e-3
        first = str(int(below.argmax()) + 1) if below.any() else "never"
        w, b = repr(float(t.w[-1])), repr(float(t.b[-1]))
        lines.append(f"{t.optimizer:<10} {t.batch_size:>5} {len(t.epoch) - 1:>7} {w:>20} {b:>20} {t.loss[-1]:>10.3e}  "
                     f"{first}")
    return "\n".join(lines)
