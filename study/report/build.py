"""Build a sweep's report from its stores and log it to MLflow: what ``make report`` and ``make sweep`` run.

The way through: ``inputs.load`` reads the stores, ``coverage.restrict`` keeps the largest complete grid of finished
cells, ``analysis.analyse`` computes everything the report says (the judge's and the checks' rooms), and
``document.compose.write`` writes it. The heavy modules are imported when a report is built, not when this one is:
``--help`` and a mistyped flag need no numpy.
"""
from __future__ import annotations

import os
from pathlib import Path

from study.errors import BadInput

# the files a report's own code lives in: a report says when they differ from the commit it names
REPORT_CODE = ("study/report", "study/schema/report.py", "pipelines/report.py", "conf/report.yaml",
               "conf/claims.yaml", "conf/lecture.yaml")  # the lecture's: the claims' toy problem


def code_commit() -> str:
    """The commit of the code that builds the report, marked when the report's own files differ from it."""
    from study import provenance

    commit = provenance.commit()
    if commit is None:
        return "unknown"
    return commit + (" (report code modified since)" if provenance.modified(REPORT_CODE) else "")


def build(runs_dir: str | Path, sweep: str | None = None, out: str | Path | None = None, log: bool = True,
          say=print) -> Path:
    """The report of ``sweep`` (default: the newest in the stores) into ``out`` (default: reports/<sweep>/), then
    (``log``) as the artifacts of a run tagged role=report in the sweep's experiment. Every check comes before the
    stores are opened for writing: bad input is one line and nothing written."""
    from study.report import inputs, settings
    from study.report.document import output
    from study.sweep import tracking

    if str(runs_dir) == "":  # Path("") is the working directory: never what an empty flag meant
        raise BadInput("--runs-dir", "empty: give the directory of the sweep's stores (default runs/)")
    if out is not None:
        out = output.check(out)
    runs_dir = Path(runs_dir)
    if not os.environ.get("MLFLOW_TRACKING_URI") and not (runs_dir / "mlflow.db").exists():
        raise BadInput("--runs-dir", f"no MLflow store at {runs_dir / 'mlflow.db'} (run `make sweep` first)")
    report_settings = settings.load()
    sweep = sweep or tracking.newest_sweep(runs_dir)
    if sweep is None:
        raise BadInput("--runs-dir", f"no sweep in the stores under {runs_dir} (run `make sweep` first)")
    known = [e.name for e in tracking.experiments_newest_first(tracking.client(runs_dir))]
    if sweep not in known:  # checked here, before the loader opens (and would create) the sweep's Optuna journal
        sweeps = ", ".join(n for n in known if n not in ("Default", "lecture")) or "none"
        raise BadInput("--sweep", f"no sweep {sweep!r} in {tracking.mask_url(tracking.tracking_uri(runs_dir))} "
                                  f"(sweeps there: {sweeps})")
    out = output.check(out if out is not None else output.default_dir(sweep))
    results = inputs.load(runs_dir, sweep)
    if results.evals.empty:  # nothing to build a report on: one line (a partial sweep gets a partial report)
        raise BadInput("--sweep", f"sweep {sweep!r} has no finished evaluation runs yet")
    files = write(results, out, report_settings, code_commit())
    say(f"report: {out / 'report.html'} and {out / 'report.md'} ({len(files)} files)")
    if log:
        client = tracking.client(runs_dir)
        experiment = tracking.experiment_id(client, sweep, runs_dir)
        run_id = tracking.log_report_run(client, experiment, out, ("report.html", "report.md"), ("figures", "tables"))
        say(f"logged as MLflow run {run_id} (role=report) in experiment {sweep!r}")
    return out


def write(results, out_dir: str | Path, settings, report_commit: str = "") -> list[Path]:
    """The report of ``results`` (a ``study.report.inputs.SweepResults``) with ``settings``
    (``study.report.settings.Settings``) into ``out_dir``, replacing the report there; returns the files written,
    the directory's marker aside."""
    from study.report import analysis, coverage
    from study.report.document import compose, output

    out_dir = output.check(out_dir)  # before the work: a path the report may not replace is refused at once
    used, covered = coverage.restrict(results)
    return compose.write(analysis.analyse(used, settings), out_dir, report_commit, covered)
