"""Tune every optimizer at every batch size on every dataset; MLflow records it all.

    python -m pipelines.sweep --profile smoke --runs-dir /tmp/x datasets=iris,moons optimizers=gd,adam \\
        batch_sizes=full,32 trials=4 epochs=5 seeds=2

Overrides are key=value (lists comma-separated, nested keys dotted: epochs.digits=10). Running the same sweep
again continues it: finished cells and trials are not redone. --worker joins a shared sweep as one worker
(OPTUNA_STORAGE / MLFLOW_TRACKING_URI, else the URLs in <runs-dir>/services/env written by `make services`).
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from pipelines.cli import ArgumentParser, run

# study.* is imported inside the functions: a mistyped flag is reported in a tenth of a second, not after the two
# seconds that importing numpy, scikit-learn, Optuna and MLflow takes.


def parse(argv):
    parser = ArgumentParser(prog="python -m pipelines.sweep", description=__doc__.split("\n\n")[0],
                            epilog="Profiles live in conf/sweep/; search spaces in conf/search_spaces.yaml.")
    parser.add_argument("--profile", default="default", help="smoke, default, full, or a path to a YAML profile")
    parser.add_argument("--runs-dir", default="runs", help="where the stores live (default: runs/)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes on this machine (default: the number of cores)")
    parser.add_argument("--worker", action="store_true",
                        help="run as one worker in this process and join a shared sweep (make worker)")
    parser.add_argument("--report", action="store_true",
                        help="then build the report (make sweep does), unless there was nothing to run and it exists")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override a profile key")
    args = parser.parse_intermixed_args(argv)  # flags and key=value overrides in any order
    if args.workers < 1:
        parser.error(f"argument --workers: must be a positive integer, got {args.workers}")
    return args


def load_services_env(runs_dir: str) -> None:
    """`make services` writes `export NAME=value` lines; use them for whatever the environment does not set."""
    path = Path(runs_dir) / "services" / "env"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        parts = shlex.split(line)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            name, value = parts[1].split("=", 1)
            os.environ.setdefault(name, value)


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
    from study import record, sweep, tracking, tuning

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


def main(argv=None) -> int:
    args = parse(argv)
    from study import config, sweep, tracking

    # For the workers it spawns. Set, not setdefault: a value inherited from whatever launched us (or left in the
    # environment by an earlier in-process call, as in the tests) is some other command's.
    os.environ.pop(tracking.COMMAND_VARIABLE, None)
    os.environ[tracking.COMMAND_VARIABLE] = tracking.mask_url(tracking.command_line())

    if args.worker:
        load_services_env(args.runs_dir)
    cfg = config.load_sweep(args.profile, args.overrides)
    stores = sweep.open_stores(cfg, args.runs_dir)  # every store checked before any training
    storage = stores[0]
    pending = sweep.pending_cells(storage, cfg)
    if not pending:
        print(f"sweep {cfg.name!r}: all {len(cfg.cells())} cells already done; nothing to run.", file=sys.stderr)
        existing = Path("reports") / cfg.name / "report.html"
        if args.report and existing.exists():
            print(f"report: {existing} (built earlier; `make report` rebuilds it)", file=sys.stderr)
            return 0
        return build_report(args, cfg) if args.report else 0
    before = sweep.counts(cfg, storage)
    done_trials = sum(v for k, v in before["trials"].items() if k != "FAIL")
    progress = Progress(cfg, done_trials, before["cells_done"])
    try:
        workers = min(args.workers, len(pending))  # a second worker for one cell would only start and stop
        if args.worker or workers == 1:
            timing = sweep.run_in_process(cfg, args.runs_dir, progress, stores=stores)
        else:
            timing = sweep.run_local(cfg, args.runs_dir, workers, progress)
    finally:
        progress.close()
    print(summary(cfg, args.runs_dir, storage, timing), file=sys.stderr)
    if timing["interrupted"]:
        print("interrupted: finished work is saved; run the same command again to resume.", file=sys.stderr)
        return 130
    if timing["failed"]:
        print("a worker failed; see the messages above. Run the same command again to resume.", file=sys.stderr)
        return 1
    return build_report(args, cfg) if args.report else 0


def build_report(args, cfg) -> int:
    from pipelines import report

    return report.main(["--runs-dir", str(args.runs_dir), "--sweep", cfg.name])


if __name__ == "__main__":
    run(main)
