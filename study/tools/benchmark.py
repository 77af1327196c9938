"""The benchmark behind `make bench`: this project's trainer beside scikit-learn's MLPClassifier, like for like.

Same network (inputs-32-outputs relu MLP, softmax cross-entropy, float64), same data (the dataset's training split
from ``data.load(dataset, seed)``), same epochs, same batch size and the same hyperparameters, in one process with
one BLAS thread for both. scikit-learn is made to train exactly ``epochs`` epochs with nothing extra:
``alpha=0`` (no L2 penalty), ``tol=0`` and ``n_iter_no_change=max_iter`` (no early stop on the training loss),
``early_stopping=False`` (no validation split), ``shuffle=True``, ``learning_rate="constant"``.

Solvers (ours -> scikit-learn):
  momentum  sgd, momentum=gamma, nesterovs_momentum=False    the same rule: v = gamma v + eta g; w -= v
  nag       sgd, momentum=gamma, nesterovs_momentum=True     scikit-learn's Nesterov is Sutskever's reformulation
            (it steps w += gamma v - eta g after the update and takes the gradient at w), ours is the lecture's
            look-ahead form (the gradient at w - gamma v). One extra elementwise pass either way: the same cost.
  adam      adam, beta_1, beta_2, epsilon                    scikit-learn folds the bias corrections into the step
            size (eps then sits on the uncorrected sqrt(v)); the same passes over memory, negligibly different eps.
Both start from the same weights: ours from scikit-learn's own initial weights and biases (Glorot uniform, drawn
as MLPClassifier draws them from ``random_state``; a test checks them against it), so at full batch both follow
the same trajectory; at smaller batches they shuffle with different generators, so test accuracies agree within
seed noise, not digit for digit.

What is measured, per (solver, batch size):
  ms per epoch   the wall time of one whole training call (``MLPClassifier.fit`` / ``train.train``) divided by its
                 epochs, median over ``repeats`` (a cheap cell repeats on until it has run ``min_cell_seconds``);
                 repeat r uses seed ``seed + r`` for initial weights and data order.
                 Within a repeat the variants run back to back in a rotating order, so they share the machine's
                 noise. Ours runs three times: the compiled path (study/core/kernels.py, what ``train.train`` runs
                 for an MLP) with the per-epoch validation pass (what the sweep runs) and without it (like for like:
                 scikit-learn validates nothing), and the readable numpy path (``engine="numpy"``, the reference the
                 compiled one is tested against; no validation), which shows what compiling bought.
  ratios         speedup = scikit-learn's ms / ours (> 1: ours is faster); x limit = ms / the arithmetic limit.
  limit          6 x parameters x training samples flops per epoch (forward 2, backward 4 per parameter and sample)
                 at the float64 GFLOP/s of one core, measured on the spot with a large matrix product.
  accuracy       test accuracy per seed of both, their means and spreads; ``within_noise`` when the means differ by
                 at most twice the standard error of the difference (or 0.02, whichever is larger).
  population     ms per network-epoch when K networks train in one pass (K = 1, 4, 16, 64), per batch size, on the
                 benchmark's dataset and on a small one (``population_small``: most of the sweep's datasets are small,
                 and there the per-epoch Python bookkeeping, shared by the K members, is a large part of an epoch),
                 with validation on, all members with the same hyperparameters (the cost does not depend on them).
  sweep          the default sweep's own record of its timing (each worker's wall time, network-epochs trained,
                 seconds in MLflow and in Optuna, kept in the sweep's Optuna storage): network-epochs per second and
                 the shares of wall time spent in tracking and in Optuna; "not measured yet" until `make sweep` ran.

Benchmarks are not tests: nothing here asserts a time. ``TARGETS`` (from the performance issue) are only reported.
"""
from __future__ import annotations

import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from study.core import data, nn, optim, train
from study.core.batches import parse_batch_size, resolve

# Our optimizer name -> how scikit-learn's MLPClassifier spells the same solver, from our hyperparameters.
SKLEARN_SOLVERS: dict[str, Callable[[dict], dict]] = {
    "momentum": lambda h: dict(solver="sgd", learning_rate="constant", learning_rate_init=h["eta"],
                               momentum=h["gamma"], nesterovs_momentum=False),
    "nag": lambda h: dict(solver="sgd", learning_rate="constant", learning_rate_init=h["eta"],
                          momentum=h["gamma"], nesterovs_momentum=True),
    "adam": lambda h: dict(solver="adam", learning_rate_init=h["eta"], beta_1=h["beta1"], beta_2=h["beta2"],
                           epsilon=h["eps"]),
}
# ours = train(validate=True); ours_noval = train(validate=False); readable = train(validate=False, engine="numpy")
VARIANTS = ("sklearn", "ours", "ours_noval", "readable")

# The performance issue's targets, reported (never asserted): per network, like for like (ours without validation).
TARGETS = {"speedup_batch_32": 7.0, "speedup_batch_1": 10.0, "speedup_batch_full": 2.0, "x_limit_batch_32": 4.0}
SWEEP_TARGETS = {"wall_seconds": 600.0, "tracking_and_optuna_share": 0.15}  # the default sweep: < 10 min, < 15 %


@dataclass(frozen=True)
class BenchConfig:
    dataset: str = "digits"
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    solvers: tuple[str, ...] = ("momentum", "nag", "adam")
    batch_sizes: tuple = ("full", 128, 64, 32, 1)
    epochs: int = 30  # the default sweep's epochs on digits
    epochs_stochastic: int = 3  # batch 1 costs ~1,000 updates per epoch: fewer epochs keep `make bench` short
    repeats: int = 9
    min_cell_seconds: float = 3.0  # a cell repeats beyond `repeats` until it has run this long (cheap cells) ...
    max_repeats: int = 60  # ... but at most this often
    seed: int = 0  # the data split; repeat r initialises and shuffles with seed + r
    # Hyperparameters per solver: the sweep's default track (the registry's defaults), except momentum and NAG at
    # batch 1, which diverge on digits with eta = 0.01 (a diverged run times NaN arithmetic and tells nothing about
    # accuracy).
    hyper: dict = field(default_factory=lambda: {s: optim.OPTIMIZERS[s].defaults for s in SKLEARN_SOLVERS})
    hyper_stochastic: dict = field(default_factory=lambda: {"momentum": {"eta": 0.001}, "nag": {"eta": 0.001}})
    population: tuple[int, ...] = (1, 4, 16, 64)
    population_solver: str = "adam"
    population_epochs: int = 5
    population_epochs_stochastic: int = 1
    population_repeats: int = 3
    population_small: str | None = "moons"  # a second, small dataset for the population table (None: skip)
    population_small_epochs: int = 10  # its epochs are this many times the others' (its epochs are short)
    gflops_size: int = 1024  # the matrix product that measures one core's float64 GFLOP/s
    runs_dir: str = "runs"  # where `make sweep` keeps its stores (OPTUNA_STORAGE overrides, as for the sweep)
    sweep: str = "default"  # whose recorded timing the sweep section reads

    def epochs_for(self, batch) -> int:
        return self.epochs_stochastic if batch == 1 else self.epochs

    def population_epochs_for(self, batch) -> int:
        return self.population_epochs_stochastic if batch == 1 else self.population_epochs

    def hyper_for(self, solver: str, batch) -> dict:
        extra = self.hyper_stochastic.get(solver, {}) if batch == 1 else {}
        return optim.hyperparameters(solver, **{**self.hyper.get(solver, {}), **extra})


DEFAULT = BenchConfig()
# `--quick`: the same table with fewer epochs and repeats, in well under 40 s; its medians are noisier.
QUICK = replace(DEFAULT, epochs=5, epochs_stochastic=1, repeats=2, min_cell_seconds=0.0, population_epochs=2,
                population_epochs_stochastic=1, population_repeats=1, gflops_size=768)


# --- measuring ---------------------------------------------------------------------------------------------------
def measure_gflops(size: int = 1024, repeats: int = 5) -> float:
    """float64 GFLOP/s of a (size x size) @ (size x size) product, best of ``repeats`` (call under one thread)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    a @ b  # warm up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def _sklearn_fit(split: data.Split, solver: str, hyper: dict, batch, epochs: int, seed: int, hidden):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    n = split.X_train.shape[0]
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", alpha=0.0, batch_size=resolve(batch, n),
                        max_iter=epochs, tol=0.0, n_iter_no_change=epochs, early_stopping=False, shuffle=True,
                        random_state=seed, **SKLEARN_SOLVERS[solver](hyper))
    y = split.labels("train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached: that is the point
        start = time.perf_counter()
        clf.fit(split.X_train, y)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "accuracy": float(clf.score(split.X_test, split.labels("test"))),
            "diverged": not np.isfinite(clf.loss_), "epochs_run": int(clf.n_iter_)}


def sklearn_initial_theta(net, seed: int) -> np.ndarray:
    """The (1, P) parameters MLPClassifier(random_state=seed) starts from: per layer, weights then biases drawn
    uniform in +-sqrt(6 / (fan_in + fan_out)) from one RandomState (sklearn's _init_coef, for any activation but
    logistic)."""
    rng = np.random.RandomState(seed)
    theta = np.zeros((1, net.n_params))
    p = net.unpack(theta)
    for i, (fan_in, fan_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:]), start=1):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        p[f"W{i}"][0] = rng.uniform(-bound, bound, (fan_in, fan_out))
        p[f"b{i}"][0] = rng.uniform(-bound, bound, fan_out)
    return theta


def _ours_fit(net, split: data.Split, solver: str, hyper: dict, batch, epochs: int, seed: int, validate: bool,
              engine: str = "auto"):
    theta0 = sklearn_initial_theta(net, seed)
    start = time.perf_counter()
    result = train.train(net, split, solver, hyper, batch, epochs, seed, theta0, validate=validate, engine=engine)
    seconds = time.perf_counter() - start
    accuracy = net.evaluate(result.theta, split.X_test, split.Y_test)[1]
    return {"seconds": seconds, "accuracy": float(accuracy[0]), "diverged": bool(result.diverged[0]),
            "epochs_run": int(result.epochs_run[0]), "theta": result.theta}


def _accuracy_summary(values: list[float]) -> dict:
    a = np.asarray(values, float)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "per_seed": a.tolist()}


def _within_noise(ours: dict, theirs: dict, n: int) -> bool:
    se = math.sqrt((ours["sd"] ** 2 + theirs["sd"] ** 2) / max(n, 1))
    return abs(ours["mean"] - theirs["mean"]) <= max(2.0 * se, 0.02)


def bench_cell(cfg: BenchConfig, net, split, solver: str, batch, limit_ms: float, log=print) -> dict:
    """One (solver, batch size): all variants, at least ``cfg.repeats`` times, interleaved."""
    epochs, hyper = cfg.epochs_for(batch), cfg.hyper_for(solver, batch)
    runners = {
        "sklearn": lambda e, s: _sklearn_fit(split, solver, hyper, batch, e, s, cfg.hidden),
        "ours": lambda e, s: _ours_fit(net, split, solver, hyper, batch, e, s, validate=True),
        "ours_noval": lambda e, s: _ours_fit(net, split, solver, hyper, batch, e, s, validate=False),
        "readable": lambda e, s: _ours_fit(net, split, solver, hyper, batch, e, s, validate=False, engine="numpy"),
    }
    for run in runners.values():  # warm-up, untimed: caches, lazy imports, any compilation
        run(1, cfg.seed)
    samples = {v: [] for v in VARIANTS}
    accuracy = {"sklearn": [], "ours": []}
    diverged = {v: False for v in VARIANTS}
    short = []  # a run that stopped before `epochs` (diverged, or scikit-learn stopping early after all)
    validate_is_pure = True  # the validation pass must not change training: same parameters with and without
    started, r = time.perf_counter(), 0
    # at least `repeats`; more while the cell is younger than `min_cell_seconds`, so that a cheap cell's median is
    # not at the mercy of a few seconds of other work on the machine
    while r < cfg.repeats or (r < cfg.max_repeats and time.perf_counter() - started < cfg.min_cell_seconds):
        seed = cfg.seed + r
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]  # rotate who goes first
        out = {v: runners[v](epochs, seed) for v in order}
        for v in VARIANTS:
            samples[v].append(out[v]["seconds"] / epochs * 1e3)
            diverged[v] |= out[v]["diverged"]
            if out[v]["epochs_run"] != epochs:
                short.append(f"{v} seed {seed}: {out[v]['epochs_run']} of {epochs} epochs")
        accuracy["sklearn"].append(out["sklearn"]["accuracy"])
        accuracy["ours"].append(out["ours"]["accuracy"])
        validate_is_pure &= bool(np.array_equal(out["ours"]["theta"], out["ours_noval"]["theta"]))
        r += 1
    ms = {v: float(np.median(samples[v])) for v in VARIANTS}
    acc = {k: _accuracy_summary(v) for k, v in accuracy.items()}
    cell = {
        "solver": solver, "batch_size": str(batch), "samples_per_update": resolve(batch, split.X_train.shape[0]),
        "epochs": epochs, "repeats": r, "hyper": {k: float(v) for k, v in hyper.items()},
        "ms_per_epoch": ms, "ms_per_epoch_samples": samples,
        "speedup_vs_sklearn": {v: ms["sklearn"] / ms[v] for v in ("ours", "ours_noval", "readable")},
        "x_limit": {v: ms[v] / limit_ms for v in VARIANTS},
        "test_accuracy": {**acc, "within_noise": _within_noise(acc["ours"], acc["sklearn"], r)},
        "diverged": diverged, "short_runs": short, "validate_changes_nothing": validate_is_pure,
    }
    log(f"  {solver:8s} {str(batch):>5s}  sklearn {ms['sklearn']:8.2f}  ours {ms['ours']:8.2f}  "
        f"ours-noval {ms['ours_noval']:8.2f}  readable {ms['readable']:8.2f} ms/epoch")
    return cell


def bench_population(cfg: BenchConfig, net, split, log=print, epochs_factor: int = 1) -> dict:
    """ms per network-epoch with K networks stacked in one pass, per batch size; validation on, as in the sweep."""
    solver = cfg.population_solver
    ms: dict[str, dict[str, float]] = {}
    batch_sizes = [b for b in cfg.batch_sizes if b == "full" or int(b) <= split.X_train.shape[0]]
    for batch in batch_sizes:
        epochs, hyper = cfg.population_epochs_for(batch) * epochs_factor, cfg.hyper_for(solver, batch)
        train.train(net, split, solver, hyper, batch, 1, cfg.seed, net.init(cfg.seed, population=2))  # warm-up
        samples = {k: [] for k in cfg.population}
        for _ in range(cfg.population_repeats):
            for k in cfg.population:
                theta0 = net.init(cfg.seed, population=k)
                start = time.perf_counter()
                train.train(net, split, solver, hyper, batch, epochs, cfg.seed, theta0, validate=True)
                samples[k].append((time.perf_counter() - start) / (k * epochs) * 1e3)
        ms[str(batch)] = {str(k): float(np.median(v)) for k, v in samples.items()}
        row = "  ".join(f"K={k} {ms[str(batch)][str(k)]:7.3f}" for k in cfg.population)
        log(f"  population {split.name} {str(batch):>5s}  {row} ms/network-epoch")
    best = {b: int(min(row, key=row.get)) for b, row in ms.items()}
    return {
        "dataset": split.name, "sizes": list(net.sizes), "solver": solver, "validate": True,
        "ks": list(cfg.population), "repeats": cfg.population_repeats,
        "epochs": {str(b): cfg.population_epochs_for(b) * epochs_factor for b in batch_sizes},
        "ms_per_network_epoch": ms, "best_k": best,
        "best_k_speedup_vs_k1": {b: ms[b]["1"] / ms[b][str(best[b])] for b in ms} if 1 in cfg.population else {},
    }


def measure_sweep(cfg: BenchConfig, log=print) -> dict:
    """The sweep's own record of its timing: every worker keeps its wall time, network-epochs trained and seconds
    spent in MLflow and in Optuna in the sweep's Optuna storage (the "<sweep>/_meta" study's "timing:<worker>"
    attributes). Workers run side by side, so the sweep's wall time is the longest worker's and its throughput all
    network-epochs over that; the tracking and Optuna shares are of the workers' summed wall time."""
    from study.sweep import tuning  # optuna loads only here

    url = tuning.storage_url(cfg.runs_dir, cfg.sweep)
    note = f"{cfg.sweep} sweep not measured yet: run make sweep"
    empty = {"measured": False, "note": note, "sweep": cfg.sweep, "network_epochs_per_second": None,
             "tracking_share": None, "optuna_share": None}
    if "://" not in url and not os.path.exists(url):  # never create a journal just by looking
        log(f"  {note}")
        return empty
    try:
        meta = tuning.sweep_meta(tuning.open_storage(url), cfg.sweep)
    except Exception as e:  # an unreachable database: say so, the benchmark itself stands
        log(f"  {note} (storage unreadable: {type(e).__name__})")
        return {**empty, "note": f"{note} (storage unreadable: {type(e).__name__})"}
    workers = {key.split(":", 1)[1]: value for key, value in sorted(meta.items()) if key.startswith("timing:")}
    if not workers:
        log(f"  {note}")
        return empty
    walls = [w["wall"] for w in workers.values()]
    total = sum(walls)
    network_epochs = sum(w["network_epochs"] for w in workers.values())
    mlflow = sum(w.get("mlflow", 0.0) for w in workers.values())
    optuna = sum(w.get("optuna", 0.0) for w in workers.values())
    result = {
        "measured": True, "sweep": cfg.sweep, "workers": len(workers), "wall_seconds": max(walls),
        "network_epochs": network_epochs, "network_epochs_per_second": network_epochs / max(walls),
        "tracking_share": mlflow / total if total else 0.0, "optuna_share": optuna / total if total else 0.0,
        "per_worker": workers, "config": meta.get("config"), "machine": meta.get("machine"),
    }
    result["targets"] = {
        "wall_seconds": {"want": f"<= {SWEEP_TARGETS['wall_seconds']:.0f}", "measured": result["wall_seconds"],
                         "met": result["wall_seconds"] <= SWEEP_TARGETS["wall_seconds"]},
        "tracking_and_optuna_share": {"want": f"<= {SWEEP_TARGETS['tracking_and_optuna_share']}",
                                      "measured": result["tracking_share"] + result["optuna_share"],
                                      "met": result["tracking_share"] + result["optuna_share"]
                                      <= SWEEP_TARGETS["tracking_and_optuna_share"]}}
    log(f"  {cfg.sweep} sweep: {result['network_epochs_per_second']:.0f} network-epochs/s over {len(workers)} "
        f"worker(s), {result['wall_seconds']:.0f} s wall")
    return result


def _targets(cells: list[dict], limit_ms: float) -> list[dict]:
    """The issue's targets against this run's medians; informational only."""
    rows = []
    for cell in cells:
        b = cell["batch_size"]
        checks = {"32": [("speedup_batch_32", ">="), ("x_limit_batch_32", "<=")], "1": [("speedup_batch_1", ">=")],
                  "full": [("speedup_batch_full", ">=")]}.get(b, [])
        for name, sense in checks:
            key = "x_limit" if name.startswith("x_limit") else "speedup_vs_sklearn"
            like, with_val = cell[key]["ours_noval"], cell[key]["ours"]
            met = like >= TARGETS[name] if sense == ">=" else like <= TARGETS[name]
            rows.append({"target": name, "solver": cell["solver"], "batch_size": b, "want": f"{sense} {TARGETS[name]}",
                         "like_for_like": like, "with_validation": with_val, "met": bool(met)})
    return rows


def _environment() -> dict:
    from threadpoolctl import threadpool_info

    from study.provenance import provenance

    found = provenance(("numpy", "scikit-learn", "numba"))
    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return {
        "python": found.python, "numpy": found.versions["numpy"], "scikit_learn": found.versions["scikit-learn"],
        "numba": found.versions["numba"], "cpu": cpu, "cores": os.cpu_count(), "git_commit": found.short_commit,
        "blas": [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                 for i in threadpool_info()],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _read_lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.readlines()
    except OSError:
        return []


def run(cfg: BenchConfig = DEFAULT, log=print) -> dict:
    """The whole benchmark; returns the JSON-ready result. ``bench_table.format_table`` prints it."""
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    load_before = os.getloadavg()
    split = data.load(cfg.dataset, cfg.seed)
    if split.task != "classification":
        raise ValueError(f"dataset {cfg.dataset!r} is a regression task; MLPClassifier needs classification")
    net = nn.MLP((split.n_features, *cfg.hidden, split.n_outputs), activation=cfg.activation)
    n_train = split.X_train.shape[0]
    with threadpool_limits(limits=1):
        env = _environment()
        gflops = measure_gflops(cfg.gflops_size)
        limit_ms = 6.0 * net.n_params * n_train / (gflops * 1e9) * 1e3
        log(f"one core: {gflops:.1f} GFLOP/s float64; arithmetic limit {limit_ms:.3f} ms/epoch "
            f"(6 x {net.n_params} parameters x {n_train} samples)")
        cells = [bench_cell(cfg, net, split, solver, parse_batch_size(batch), limit_ms, log)
                 for solver in cfg.solvers for batch in cfg.batch_sizes]
        population = bench_population(cfg, net, split, log) if cfg.population else None
        if population and cfg.population_small:
            small = data.load(cfg.population_small, cfg.seed)
            small_net = nn.MLP((small.n_features, *cfg.hidden, small.n_outputs), cfg.activation, small.task)
            population["small_dataset"] = bench_population(cfg, small_net, small, log, cfg.population_small_epochs)
        sweep = measure_sweep(cfg, log)
    config = asdict(cfg)
    config["batch_sizes"] = [str(b) for b in cfg.batch_sizes]
    return {
        "benchmark": "trainer vs scikit-learn MLPClassifier",
        "network": {"sizes": list(net.sizes), "activation": cfg.activation, "parameters": net.n_params,
                    "dtype": "float64", "dataset": cfg.dataset, "train_samples": n_train,
                    "test_samples": int(split.X_test.shape[0])},
        "config": config,
        "environment": {**env, "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())},
        "limit": {"gflops": gflops, "flops_per_epoch": 6.0 * net.n_params * n_train, "ms_per_epoch": limit_ms,
                  "matmul_size": cfg.gflops_size},
        "cells": cells,
        "population": population,
        "sweep": sweep,
        "targets": _targets(cells, limit_ms),
        "seconds": time.perf_counter() - started,
    }
