"""Build a sweep's report: which optimizer and which batch size to use in practice, and how sure we are.

    python -m pipelines.report --runs-dir runs [--sweep NAME] [--out DIR]

Reads the sweep's MLflow and Optuna stores (never earlier reports) and writes report.html (one self-contained
page), report.md, figures/*.png and tables/*.csv into --out (default reports/<sweep>/), then logs the same files
as the artifacts of a run tagged role=report in the sweep's experiment, replacing the previous report run.
Building twice from the same stores gives byte-identical files.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from pipelines.cli import ArgumentParser, run
from study import tracking
from study.errors import BadInput
from study.report import document, inputs, settings

REPORT_CODE = ("study/report", "pipelines/report.py", "conf/report.yaml", "conf/claims.yaml")


def parse(argv):
    parser = ArgumentParser(prog="python -m pipelines.report", description=__doc__.split("\n\n")[0],
                            epilog="Judging rules: conf/report.yaml; the lecture's claims: conf/claims.yaml.")
    parser.add_argument("--runs-dir", default="runs", help="where the sweep's stores live (default: runs/)")
    parser.add_argument("--sweep", help="the sweep's name (default: the newest sweep in the store)")
    parser.add_argument("--out", help="output directory (default: reports/<sweep>/)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    return parser.parse_args(argv)


def code_commit() -> str:
    """The commit of the code that builds the report, marked when the report's own files differ from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=root).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", *REPORT_CODE], capture_output=True,
                                 text=True, timeout=5, cwd=root).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        return "unknown"
    return commit + (" (report code modified since)" if changed else "")


def log_report(runs_dir: Path, sweep: str, out: Path) -> str:
    client = tracking.client(runs_dir)
    experiment = tracking.experiment_id(client, sweep, runs_dir)
    return tracking.log_report_run(client, experiment, out, ("report.html", "report.md"), ("figures", "tables"))


def main(argv=None) -> int:
    args = parse(argv)
    runs_dir = Path(args.runs_dir)
    if not os.environ.get("MLFLOW_TRACKING_URI") and not (runs_dir / "mlflow.db").exists():
        raise BadInput("--runs-dir", f"no MLflow store at {runs_dir / 'mlflow.db'} (run `make sweep` first)")
    report_settings = settings.load()
    sweep = args.sweep or inputs.newest_sweep(runs_dir)
    if sweep is None:
        raise BadInput("--runs-dir", f"no sweep in the stores under {runs_dir} (run `make sweep` first)")
    known = [e.name for e in tracking.experiments_newest_first(tracking.client(runs_dir))]
    if sweep not in known:  # checked here, before the loader opens (and would create) the sweep's Optuna journal
        sweeps = ", ".join(n for n in known if n not in ("Default", "lecture")) or "none"
        raise BadInput("--sweep", f"no sweep {sweep!r} in {tracking.mask_url(tracking.tracking_uri(runs_dir))} "
                                  f"(sweeps there: {sweeps})")
    results = inputs.load(runs_dir, sweep)
    if results.evals.empty:
        raise BadInput("--sweep", f"sweep {sweep!r} has no finished evaluation runs yet")
    out = Path(args.out) if args.out else Path("reports") / sweep
    files = document.write(results, out, report_settings, code_commit())
    print(f"report: {out / 'report.html'} and {out / 'report.md'} ({len(files)} files)")
    if not args.no_log:
        run_id = log_report(runs_dir, sweep, out)
        print(f"logged as MLflow run {run_id} (role=report) in experiment {sweep!r}")
    return 0


if __name__ == "__main__":
    run(main)
