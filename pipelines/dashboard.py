"""Serve optuna-dashboard over a sweep's Optuna storage (``make dashboard``).

    python -m pipelines.dashboard --runs-dir runs [--sweep NAME] [--host 127.0.0.1] [--port 8080]

The storage is OPTUNA_STORAGE if set, else the sweep's journal file under the runs directory (default sweep: the
newest in the MLflow store). Binds 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from pipelines.cli import ArgumentParser, run
from study.errors import BadInput
from study.sweep import names, tracking, tuning


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m pipelines.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--sweep", default=None, help="the sweep to show (default: the newest)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    url = os.environ.get(names.OPTUNA_STORAGE)
    if not url:
        sweep = args.sweep or tracking.newest_sweep(args.runs_dir)
        if sweep is None:
            raise BadInput("--runs-dir", f"no sweep found in {args.runs_dir}; run `make sweep` first")
        url = tuning.storage_url(args.runs_dir, sweep)
        if not Path(url).exists():
            raise BadInput("--sweep", f"no Optuna journal for sweep {sweep!r} at {url}")
    print(f"optuna-dashboard over {tracking.mask_url(url)} at http://{args.host}:{args.port}", file=sys.stderr)
    command = [str(Path(sys.executable).parent / "optuna-dashboard"), url, "--host", args.host,
               "--port", str(args.port)]
    if "://" not in url:
        command += ["--storage-class", "JournalFileStorage"]
    os.execv(command[0], command)


if __name__ == "__main__":
    run(main)
