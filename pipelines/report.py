"""Build a sweep's report: which optimizer and which batch size to use in practice, and how sure we are.

    python -m pipelines.report --runs-dir runs [--sweep NAME] [--out DIR]

Reads the sweep's MLflow and Optuna stores (never earlier reports) and writes report.html (one self-contained
page), report.md, figures/*.png and tables/*.csv into --out (default reports/<sweep>/), then logs the same files
as the artifacts of a run tagged role=report in the sweep's experiment, replacing the previous report run.
Building twice from the same stores gives byte-identical files.

The report writes only into a directory it made: --out must not exist yet, be empty, or be an earlier report's
directory (marked by the file .optstudy-report, which lists what the report wrote there and is not logged to
MLflow); anything else is refused untouched. A rebuild deletes only the files that marker lists. On a partial
sweep (interrupted, or an MLflow store missing cells) the report rests on the finished cells and says near its
top what is missing.
"""
from __future__ import annotations

from pipelines.cli import ArgumentParser, run


def parse(argv):
    parser = ArgumentParser(prog="python -m pipelines.report", description=__doc__.split("\n\n")[0],
                            epilog="Judging rules: conf/report.yaml; the lecture's claims: conf/claims.yaml.")
    parser.add_argument("--runs-dir", default="runs", help="where the sweep's stores live (default: runs/)")
    parser.add_argument("--sweep", help="the sweep's name (default: the newest sweep in the store)")
    parser.add_argument("--out", help="output directory: new, empty or an earlier report's (default: "
                                      "reports/<sweep>/)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    from study.report import build  # after the arguments: --help and a mistyped flag need no numpy

    build.build(args.runs_dir, args.sweep, args.out, log=not args.no_log)
    return 0


if __name__ == "__main__":
    run(main)
