"""Benchmark the trainer against scikit-learn's MLPClassifier, like for like, and write runs/bench.json.

    python -m pipelines.bench [--quick] [--epochs N] [--repeats N] [--out runs/bench.json] [--runs-dir runs]

Both train the same 64-32-10 relu MLP on digits (float64, one BLAS thread) with the same epochs, batch size and
hyperparameters (sgd with momentum, sgd with Nesterov, adam; batch full / 128 / 64 / 32 / 1), side by side in one
process. Printed and written: median ms per epoch of scikit-learn and ours (the compiled path with and without the
per-epoch validation pass, and the readable numpy path it is tested against), ours' speedup over scikit-learn, both
against the arithmetic limit measured on the spot, test accuracies side by side, ms per network-epoch when K = 1, 4,
16, 64 networks train in one pass, and the default sweep's own timing record (network-epochs per second, the
shares of tracking and Optuna) once `make sweep` has run.
The default run takes a few minutes; --quick gives the same table in well under a minute, with noisier medians.
What is measured and how: study/tools/benchmark.py.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from pipelines.cli import ArgumentParser, run
from study.errors import BadInput
from study.sweep.names import THREAD_VARIABLES

# numpy (and anything that loads it) is imported inside the functions: see ``one_thread_each``.

SOLVERS = ("momentum", "nag", "adam")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise ValueError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"must be a non-negative integer, got {text!r}")
    return value


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m pipelines.bench", description=__doc__.split("\n\n", 1)[0],
                       epilog="Benchmarks are not tests: nothing is asserted; the issue's targets are reported.")
    p.add_argument("--quick", action="store_true", help="fewer epochs and repeats (< 40 s); options below override")
    p.add_argument("--epochs", help="epochs per run at every batch size but 1 (default 30; quick 5)")
    p.add_argument("--epochs-stochastic", help="epochs per run at batch size 1 (default 3; quick 1)")
    p.add_argument("--repeats", help="timed repeats per cell, at least; cheap cells repeat for 3 s (quick: no); "
                                     "medians are reported (default 9; quick 2)")
    p.add_argument("--solvers", help=f"comma-separated, from {','.join(SOLVERS)} (default: all)")
    p.add_argument("--batch-sizes", help="comma-separated, 'full' or positive integers (default full,128,64,32,1)")
    p.add_argument("--population", help="comma-separated K for the stacked-population table, or 'none' "
                                        "(default 1,4,16,64)")
    p.add_argument("--population-epochs", help="epochs per population run, batch 1 excepted (default 5; quick 2)")
    p.add_argument("--dataset", help="a classification dataset from study/core/data.py (default digits)")
    p.add_argument("--seed", help="the data split's seed; repeat r initialises and shuffles with seed + r (default 0)")
    p.add_argument("--out", default="runs/bench.json", help="where the JSON goes (default runs/bench.json)")
    p.add_argument("--runs-dir", default="runs", help="the sweep's stores, for its timing record (default runs; "
                                                      "OPTUNA_STORAGE overrides, as for the sweep)")
    p.add_argument("--sweep", default="default", help="the sweep whose timing record is shown (default: default)")
    return p


def config_from(args):
    from study.core import data
    from study.tools import benchmark
    from study.core.batches import parse_batch_size

    def option(flag: str, convert, text):
        try:
            return convert(text)
        except ValueError as error:
            raise BadInput(f"--{flag}", str(error)) from None

    cfg = benchmark.QUICK if args.quick else benchmark.DEFAULT
    changes = {}
    for flag, key in (("epochs", "epochs"), ("epochs-stochastic", "epochs_stochastic"), ("repeats", "repeats"),
                      ("population-epochs", "population_epochs")):
        text = getattr(args, key)
        if text is not None:
            changes[key] = option(flag, _positive, text)
    if args.seed is not None:
        changes["seed"] = option("seed", _non_negative, args.seed)
    changes["runs_dir"], changes["sweep"] = args.runs_dir, args.sweep
    if args.solvers is not None:
        solvers = tuple(s.strip() for s in args.solvers.split(",") if s.strip())
        unknown = [s for s in solvers if s not in SOLVERS]
        if not solvers or unknown:
            raise BadInput("--solvers", f"unknown solver {unknown[0]!r}; choose from {', '.join(SOLVERS)}"
                           if unknown else "no solver given")
        changes["solvers"] = solvers
    if args.batch_sizes is not None:
        sizes = tuple(option("batch-sizes", parse_batch_size, s.strip()) for s in args.batch_sizes.split(","))
        changes["batch_sizes"] = sizes
    if args.population is not None:
        text = args.population.strip().lower()
        changes["population"] = () if text == "none" else tuple(
            option("population", _positive, k.strip()) for k in text.split(","))
    if args.dataset is not None:
        spec = data.DATASETS.get(args.dataset)
        if spec is None or spec.task != "classification":
            choices = sorted(n for n, d in data.DATASETS.items() if d.task == "classification")
            raise BadInput("--dataset", f"{args.dataset!r} is not a classification dataset; choose from "
                                        f"{', '.join(choices)}")
        changes["dataset"] = args.dataset
    return replace(cfg, **changes)


def one_thread_each() -> None:
    """One thread for every BLAS and for numba, set before numpy loads any: threadpoolctl also limits them at run
    time, but only the libraries already loaded; a library loaded later would start with all cores."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"


def main(argv: Sequence[str] | None = None) -> int:
    one_thread_each()
    args = parser().parse_args(argv)
    cfg = config_from(args)
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise BadInput("--out", f"{out} is a directory; give a file path")
    from study.tools import bench_table, benchmark
    from study.core.data import load

    n_train = load(cfg.dataset, cfg.seed).X_train.shape[0]
    too_big = [b for b in cfg.batch_sizes if b != "full" and int(b) > n_train]
    if too_big:
        raise BadInput("--batch-sizes", f"batch size {too_big[0]} is larger than the {n_train} training samples "
                                        f"of {cfg.dataset}")
    print(f"benchmark: {', '.join(cfg.solvers)} x batch {', '.join(map(str, cfg.batch_sizes))} on {cfg.dataset}, "
          f"{cfg.repeats} repeats{' (quick)' if args.quick else ''}", flush=True)
    result = benchmark.run(cfg, log=lambda line: print(line, flush=True))
    print()
    print(bench_table.format_table(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)  # all or nothing: a reader never sees half a file
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main)
