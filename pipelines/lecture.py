"""Reproduce the lecture's toy problem with the platform's own code: trajectories, figures, GIF, the numbers its
claims are judged on, MLflow runs.

    python -m pipelines.lecture [--config conf/lecture.yaml] [--claims conf/claims.yaml] [--runs-dir runs]
                                [--out runs/lecture] [--no-mlflow]

Writes to --out (default <runs-dir>/lecture):
  trajectories.csv   optimizer,batch_size,epoch,step,w,b,loss: a start row (epoch 0, step 0) and one row per
                     update for every optimizer x batch mode; w, b after the update, loss = the full error there
  *.png, *.gif       the error surface, contour maps with every path, error against epoch, other starts, larger
                     learning rates, momentum's pulses, AdaGrad on sparse features, and the paths as an animation
  claims.json        the numbers the lecture's claims are judged on (epochs to escape and to the target, u-turns,
                     AdaGrad's and RMSProp's step decay, path-length ratios, mini-batch gradient errors), one row per
                     problem, optimizer or batch size and learning rate, with the settings they were measured at;
                     the report judges the same numbers (it measures them itself: it needs no lecture run)
and logs one run per optimizer x batch mode to the MLflow experiment `lecture` (tags role=lecture, dataset,
optimizer, batch_size; params eta/gamma/beta/beta1/beta2/eps; metric `loss` per epoch; the run's own CSV rows,
the figures and claims.json as artifacts) in sqlite:///<runs-dir>/mlflow.db, or MLFLOW_TRACKING_URI if set. A
re-run replaces the previous lecture runs (deleted, their local artifacts removed): the experiment shows one set.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from pipelines.cli import ArgumentParser, run
from study.errors import BadInput
from study.lecture import evidence, record, toy as lecture
from study.schema import loader
from study.schema.lecture import Lecture
from study.schema.report import Claims, ToyProblem

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "conf" / "lecture.yaml"
DEFAULT_CLAIMS = REPO / "conf" / "claims.yaml"


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m pipelines.lecture", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Settings (start, epochs, batch modes, each optimizer's hyperparameters, figure "
                              "windows) live in conf/lecture.yaml; the claims' grids and thresholds in "
                              "conf/claims.yaml.")
    p.add_argument("--config", default=None, help="settings file (default: conf/lecture.yaml)")
    p.add_argument("--claims", default=None, help="the claims' criteria, whose numbers go to claims.json "
                                                  "(default: conf/claims.yaml)")
    p.add_argument("--runs-dir", default="runs", help="the stores' directory: MLflow in <runs-dir>/mlflow.db, "
                                                       "artifacts in <runs-dir>/artifacts (default: runs)")
    p.add_argument("--out", default=None, help="where the CSV and figures go (default: <runs-dir>/lecture)")
    p.add_argument("--no-mlflow", action="store_true", help="write the files only, log nothing to MLflow")
    return p


def _writable_dir(flag: str, path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise BadInput(flag, f"{path} exists and is not a directory")
    return path


def _toy_problem(model: Lecture, claims: Claims, shown_as: str) -> ToyProblem:
    """The claims' toy problem at the lecture's settings, which must include those it runs at."""
    missing = [name for name in evidence.TOY_OPTIMIZERS if getattr(model.optimizers, name) is None]
    if missing:
        raise BadInput(f"{shown_as}: optimizers.{missing[0]}", f"missing: the lecture's claims are measured at its "
                                                               f"settings of {', '.join(evidence.TOY_OPTIMIZERS)}")
    return claims.toy_problem(model)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = Path(args.config) if args.config else DEFAULT_CONFIG
    # Everything that can be wrong with the input is checked here, before a single file is written.
    model = lecture.load_lecture(config, shown_as=args.config)
    settings = model.as_settings()
    claims = loader.load(Claims, Path(args.claims) if args.claims else DEFAULT_CLAIMS, args.claims)
    problem = _toy_problem(model, claims, args.config or loader.shown(config))
    runs_dir = _writable_dir("--runs-dir", Path(args.runs_dir))
    out = _writable_dir("--out", Path(args.out) if args.out else runs_dir / "lecture")

    mlflow_client = None
    if not args.no_mlflow:  # imported only now: MLflow takes seconds to import, --help and bad input need none
        from study.sweep import tracking

        mlflow_client = tracking.checked_client(runs_dir)  # an unreachable store is bad input, caught before writing
        store = tracking.mask_url(tracking.tracking_uri(runs_dir))

    started = time.perf_counter()
    results = lecture.compute(settings)
    measured = evidence.measure(problem, claims)
    print(f"lecture: {len(results.trajectories)} trajectories and the claims' numbers computed "
          f"({time.perf_counter() - started:.1f} s)", flush=True)

    from study.lecture import figures as lecture_figures  # matplotlib: only once there is something to draw

    out.mkdir(parents=True, exist_ok=True)
    table = lecture.write_trajectories_csv(out / "trajectories.csv", results.trajectories)
    numbers = evidence.write_json(out / "claims.json", problem, claims, measured)
    figures = lecture_figures.draw_all(settings, results, out)
    print(f"lecture: {table}, {numbers.name} and {len(figures)} figures in {out}/ "
          f"({time.perf_counter() - started:.1f} s)", flush=True)
    if mlflow_client is not None:
        logged, replaced = record.log_to_mlflow(mlflow_client, results, [*figures, numbers], runs_dir)
        print(f"lecture: {logged} runs logged to MLflow experiment '{record.EXPERIMENT}' at {store}"
              f"{f', replacing {replaced} earlier ones' if replaced else ''} "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
    print(record.summary(results))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
