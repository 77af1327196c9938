"""Tune every optimizer at every batch size on every dataset; MLflow records it all.

    python -m pipelines.sweep --profile smoke --runs-dir /tmp/x datasets=iris,moons optimizers=gd,adam \\
        batch_sizes=full,32 trials=4 epochs=5 seeds=2

Overrides are key=value (lists comma-separated, nested keys dotted: epochs.digits=10). Running the same sweep
again continues it: finished cells and trials are not redone. --worker joins a shared sweep as one worker
(OPTUNA_STORAGE / MLFLOW_TRACKING_URI, else the URLs in <runs-dir>/services/env written by `make services`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from pipelines.cli import ArgumentParser, directory, run

# Each worker is a process with its own copy of numpy, scikit-learn, numba, Optuna and MLflow (about 300 MB) that
# trains on one core with one BLAS thread: beyond a few per core they only wait for each other.
WORKERS_PER_CORE = 4

# study.* is imported inside the functions: a mistyped flag is reported in a tenth of a second, not after the two
# seconds that importing numpy, scikit-learn, Optuna and MLflow takes.


def parse(argv):
    parser = ArgumentParser(prog="python -m pipelines.sweep", description=__doc__.split("\n\n")[0],
                            epilog="Profiles live in conf/sweep/; search spaces in conf/search_spaces.yaml.")
    parser.add_argument("--profile", default="default", help="smoke, default, full, or a path to a YAML profile")
    parser.add_argument("--runs-dir", default="runs", type=directory, help="where the stores live (default: runs/)")
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
    most = WORKERS_PER_CORE * (os.cpu_count() or 1)
    if args.workers > most:
        parser.error(f"argument --workers: must be at most {most} ({WORKERS_PER_CORE} per core: each worker is a "
                     f"process training on one core, and more only wait for each other), got {args.workers}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    from study import provenance
    from study.sweep import config, console, names, sweep, tracking

    # For the workers it spawns. Set, not setdefault: a value inherited from whatever launched us (or left in the
    # environment by an earlier in-process call, as in the tests) is some other command's.
    os.environ.pop(names.OPTSTUDY_COMMAND, None)
    os.environ[names.OPTSTUDY_COMMAND] = tracking.mask_url(provenance.command_line())

    if args.worker:
        from study.tools import services

        services.load_env(args.runs_dir)
    cfg = config.load_sweep(args.profile, args.overrides)
    check_memory(cfg, 1 if args.worker else args.workers, args.runs_dir)
    stores = sweep.open_stores(cfg, args.runs_dir)  # every store checked before any training
    storage = stores[0]
    pending = sweep.pending_cells(storage, cfg, stores)  # and done cells whose MLflow runs are missing
    if not pending:
        print(f"sweep {cfg.name!r}: all {len(cfg.cells())} cells already done; nothing to run.", file=sys.stderr)
        existing = Path("reports") / cfg.name / "report.html"
        if args.report and existing.exists():
            print(f"report: {existing} (built earlier; `make report` rebuilds it)", file=sys.stderr)
            return 0
        return build_report(args, cfg) if args.report else 0
    before = sweep.counts(cfg, storage)
    done_trials = sum(v for k, v in before["trials"].items() if k != names.FAIL)
    progress = console.Progress(cfg, done_trials, before["cells_done"])
    try:
        workers = min(args.workers, len(pending))  # a second worker for one cell would only start and stop
        if args.worker or workers == 1:
            timing = sweep.run_in_process(cfg, args.runs_dir, progress, stores=stores)
        else:
            timing = sweep.run_local(cfg, args.runs_dir, workers, progress)
    finally:
        progress.close()
    print(console.summary(cfg, args.runs_dir, storage, timing), file=sys.stderr)
    if timing["interrupted"]:
        print("interrupted: finished work is saved; run the same command again to resume.", file=sys.stderr)
        return 130
    if timing["failed"]:
        print("a worker failed; see the messages above. Run the same command again to resume.", file=sys.stderr)
        return 1
    return build_report(args, cfg) if args.report else 0


def check_memory(cfg, workers: int, runs_dir) -> None:
    """The largest cell fits in this machine's memory, and so do ``workers`` of them, or one line, before any
    store is opened. Optuna's journal file (the default storage, under ``runs_dir``) is counted in every worker,
    which replays it whole; a database (``OPTUNA_STORAGE``) is not."""
    from study.schema import loader
    from study.sweep import memory, tuning

    journal = tuning.journal_path(tuning.storage_url(runs_dir, cfg.name)) is not None
    memory.refuse_if_too_large(cfg, loader.shown(cfg.source), journal=journal)
    memory.refuse_too_many_workers(cfg, workers, journal=journal)


def build_report(args, cfg) -> int:
    from study.report import build

    build.build(args.runs_dir, cfg.name)
    return 0


if __name__ == "__main__":
    run(main)
