"""The numbers the lecture's claims are judged on, measured on small problems with the platform's own trainer.

The lecture computes them (here, a pure function of its settings and the claims' criteria: ``measure``); the report
only judges them (``study.report.checks.claims`` turns them into verdicts with the thresholds of conf/claims.yaml).
Each problem trains a population of K networks, one per learning rate of a grid (the trainer's population axis),
with ``record_steps``: every update comes back in ``study.core.train.Steps``, the same record the lecture's figures
read. From it: epochs to leave the plateau or reach the target, u-turns (sign changes of the step along a
parameter), the path length of each weight, the effective step of an adaptive method (its own state, not a
recomputed one), the error of mini-batch gradients. Deterministic, about 2 s.

``measure`` returns plain dicts of arrays (the report's figure and table read them by key); ``as_json`` is the
record the lecture pipeline writes next to its outputs (claims.json) and logs with its MLflow runs.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np

from study.core import data, nn, optim, train
from study.core.batches import BatchIterator, resolve
from study.schema.report import Claims, MinibatchCriteria, SparseCriteria, ToyProblem

# The optimizers whose lecture settings the toy problem runs at (conf/lecture.yaml must set them).
TOY_OPTIMIZERS = ("gd", "momentum", "rmsprop")
# The toy problem's runs, in the order of the claims' table: the five rules on the grid, then GD twice more.
TOY_RUNS = ("gd", "momentum", "nag", "adagrad", "rmsprop", "gd_raised", "gd_effective")


def recorded(net, split, optimizer: str, hyper: dict, batch_size, epochs: int, theta0: np.ndarray, seed: int = 0):
    """Every update of a population (``train.Steps``) and which members diverged (K,)."""
    result = train.train(net, split, optimizer, hyper, batch_size, epochs, seed, theta0, validate=False,
                         record_steps=True)
    return result.steps, result.diverged


def u_turns(path: np.ndarray, min_update: float) -> tuple[np.ndarray, np.ndarray]:
    """Per member: the number of u-turns (consecutive steps of opposite sign along one parameter, both larger
    than ``min_update``) and the number of consecutive step pairs that could have been one.

    A step is the move between recorded points (np.diff of the path), what a reader of the path sees."""
    step = np.diff(path, axis=1)
    moving = np.abs(step) > min_update
    pairs = moving[:, 1:] & moving[:, :-1]
    turned = (np.sign(step[:, 1:]) * np.sign(step[:, :-1]) < 0) & pairs
    return turned.sum(axis=(1, 2)), pairs.sum(axis=(1, 2))


def first_step_below(curve: np.ndarray, level: float) -> float:
    hits = np.flatnonzero(curve <= level)
    return float(hits[0]) if len(hits) else math.inf


# --- the lecture's toy problem ---------------------------------------------------------------------------------
def lecture_toy(problem: ToyProblem) -> dict:
    """Every optimizer on the lecture's sigmoid neuron over the learning-rate grid, full batch.

    Returns {optimizer: {"etas", "loss", "diverged", "escape", "target", "u_turns", "b_step_decay"}} where escape
    and target are epochs (inf if never) and b_step_decay is AdaGrad's/RMSProp's last effective step on b over
    its first (how far the adaptive learning rate decayed). Besides the grid's: "gd_raised", GD on the ladder of
    raised learning rates, and "gd_effective", GD at eta / (1 - gamma), the step momentum's velocity settles to on
    a constant slope (so that "momentum is faster" is not merely "momentum takes 10x larger steps")."""
    cfg = problem.criteria
    split = data.load("toy")
    net = nn.SigmoidNeuron(n_features=1, reduction="sum")
    etas = np.asarray(cfg.etas, float)
    theta0 = net.init(problem.start[0], problem.start[1], population=len(etas))
    initial = float(net.loss(theta0[:1], split.X_train, split.Y_train)[0])
    extra = {"momentum": {"gamma": problem.gamma}, "nag": {"gamma": problem.gamma}, "adagrad": {"eps": problem.eps},
             "rmsprop": {"beta": problem.beta, "eps": problem.eps}}
    runs = {"initial_loss": initial, "etas": etas}
    for run in TOY_RUNS:
        rule, grid = run.split("_")[0], etas
        if run == "gd_raised":  # GD again, on the ladder of raised learning rates
            grid = np.asarray(cfg.raised_etas, float)
        if run == "gd_effective":  # GD at momentum's terminal step eta / (1 - gamma): same effective step
            grid = etas / (1.0 - problem.gamma)
        hyper = optim.hyperparameters(rule, eta=grid, **extra.get(rule, {}))
        start = np.repeat(theta0[:1], len(grid), axis=0)
        steps, diverged = recorded(net, split, rule, hyper, "full", int(problem.epochs), start)
        loss = steps.losses(net, split.X_train, split.Y_train)
        turns, _ = u_turns(steps.theta, float(cfg.min_update))
        runs[run] = {
            "etas": grid, "loss": loss, "diverged": diverged, "u_turns": turns,
            "escape": np.array([first_step_below(c, cfg.escape_fraction * initial) for c in loss]),
            "target": np.array([first_step_below(c, cfg.target_fraction * initial) for c in loss]),
            "b_step_decay": adaptive_decay(steps, problem.eps) if optim.OPTIMIZERS[rule].adaptive else None}
    return runs


def adaptive_decay(steps: train.Steps, eps: float) -> np.ndarray:
    """Per member: the last effective step on b, eta / (sqrt(v_t) + eps), over the first (eta cancels), with v_t
    the optimizer's own accumulator for b after each update it made (NaN: none)."""
    v_b = steps.state["v"][:, 1:, -1]
    out = np.full(v_b.shape[0], np.nan)
    for member, v in enumerate(v_b):
        v = v[np.isfinite(v)]
        if len(v):
            out[member] = (np.sqrt(v[0]) + eps) / (np.sqrt(v[-1]) + eps)
    return out


# --- AdaGrad and sparse features ------------------------------------------------------------------------------------
def sparse_features(cfg: SparseCriteria) -> dict:
    """GD and AdaGrad on softmax regression over the ``sparse`` dataset: per learning rate, the mean path length of
    the rare features' weights over that of the common features' weights."""
    split = data.load(cfg.dataset, seed=int(cfg.seed))
    net = nn.MLP((split.n_features, split.n_outputs))
    etas = np.asarray(cfg.etas, float)
    theta0 = net.init(int(cfg.seed), population=len(etas))
    frequency = (split.X_train != 0).mean(axis=0)
    rare = frequency <= np.quantile(frequency, cfg.quartile)
    common = frequency >= np.quantile(frequency, 1 - cfg.quartile)
    out = {"etas": etas, "frequency": frequency, "rare": rare, "common": common}
    for optimizer in ("gd", "adagrad"):
        steps, diverged = recorded(net, split, optimizer, optim.hyperparameters(optimizer, eta=etas), "full",
                                   int(cfg.epochs), theta0)
        travelled = np.nansum(np.abs(np.diff(steps.theta, axis=1)), axis=1)  # (K, P)
        per_feature = np.abs(net.unpack(travelled)["W1"]).sum(axis=2)  # (K, features)
        ratio = per_feature[:, rare].mean(axis=1) / per_feature[:, common].mean(axis=1)
        out[optimizer] = {"per_feature": per_feature, "ratio": np.where(diverged, np.nan, ratio),
                          "diverged": diverged}
    return out


# --- mini-batches: oscillation and gradient accuracy ---------------------------------------------------------------
def minibatch(cfg: MinibatchCriteria, min_update: float) -> dict:
    """Plain GD on softmax regression at each batch size and learning rate: the u-turn rate (u-turns per
    consecutive step pair and parameter); and the relative error of mini-batch gradients at the points
    full-batch GD reaches, averaged over one epoch of batches."""
    split = data.load(cfg.dataset, seed=int(cfg.seed))
    net = nn.MLP((split.n_features, split.n_outputs))
    etas = np.asarray(cfg.etas, float)
    theta0 = net.init(int(cfg.seed), population=len(etas))
    n = split.X_train.shape[0]
    sizes = [str(b) for b in cfg.batch_sizes]
    rate, diverged = {}, {}
    for batch in sizes:
        steps, blown = recorded(net, split, "gd", {"eta": etas}, batch, int(cfg.epochs), theta0, seed=int(cfg.seed))
        turns, pairs = u_turns(steps.theta, min_update)
        rate[batch] = np.where(pairs > 0, turns / np.maximum(pairs, 1), np.nan)
        diverged[batch] = blown
    # gradient error at the points full-batch GD reaches after `gradient_epochs` epochs
    steps, blown = recorded(net, split, "gd", {"eta": etas}, "full", int(cfg.gradient_epochs), theta0)
    points = np.nan_to_num(steps.theta[:, -1])
    _, full = net.loss_and_grad(points, split.X_train, split.Y_train)
    full_norm = np.linalg.norm(full, axis=1)
    error = {}
    for batch in sizes:
        if resolve(batch, n) >= n:
            continue
        errors = []
        for idx in BatchIterator(n, batch, seed=int(cfg.seed)).epoch():
            _, g = net.loss_and_grad(points, split.X_train[idx], split.Y_train[idx])
            errors.append(np.linalg.norm(g - full, axis=1) / full_norm)
        error[batch] = np.where(blown, np.nan, np.mean(errors, axis=0))
    numeric = {b: resolve(b, n) for b in sizes}
    return {"etas": etas, "sizes": sizes, "numeric": numeric, "u_turn_rate": rate, "diverged": diverged,
            "gradient_error": error}


# --- everything, and its record ---------------------------------------------------------------------------------
def measure(problem: ToyProblem, claims: Claims) -> dict:
    """Every number the lecture's trajectory claims are judged on: {"toy", "sparse", "minibatch"}.

    ``problem`` is the lecture's toy problem with the claims' grid (``Claims.toy_problem(lecture)``), ``claims``
    conf/claims.yaml (its sparse and minibatch criteria). A pure function of the two, so it is measured once per
    process for each pair (a process that builds several reports pays its 2 s once); each caller gets its own copy."""
    key = (problem.model_dump_json(), claims.model_dump_json())
    if key not in _MEASURED:
        _MEASURED[key] = {"toy": lecture_toy(problem), "sparse": sparse_features(claims.sparse),
                          "minibatch": minibatch(claims.minibatch, float(problem.criteria.min_update))}
    return copy.deepcopy(_MEASURED[key])


_MEASURED: dict[tuple[str, str], dict] = {}  # measure's results in this process, by the JSON of its inputs


def table(measured: dict) -> list[dict]:
    """Every measurement behind the claims, one row per (problem, optimizer or batch size, learning rate): the
    report's claims_toy table and the rows of claims.json."""
    rows = []
    runs = measured["toy"]
    for optimizer in TOY_RUNS[:5]:
        r = runs[optimizer]
        for i, eta in enumerate(runs["etas"]):
            rows.append({"problem": "lecture_toy", "optimizer": optimizer, "batch_size": "full", "eta": eta,
                         "epochs_to_escape": r["escape"][i], "epochs_to_target": r["target"][i],
                         "u_turns": r["u_turns"][i], "diverged": bool(r["diverged"][i]),
                         "b_step_decay": np.nan if r["b_step_decay"] is None else r["b_step_decay"][i]})
    r = runs["gd_raised"]
    for i, eta in enumerate(r["etas"]):
        rows.append({"problem": "lecture_toy_raised", "optimizer": "gd", "batch_size": "full", "eta": eta,
                     "epochs_to_escape": r["escape"][i], "epochs_to_target": r["target"][i],
                     "u_turns": r["u_turns"][i], "diverged": bool(r["diverged"][i])})
    sp = measured["sparse"]
    for optimizer in ("gd", "adagrad"):
        for i, eta in enumerate(sp["etas"]):
            rows.append({"problem": "sparse", "optimizer": optimizer, "batch_size": "full", "eta": eta,
                         "rare_common_ratio": sp[optimizer]["ratio"][i],
                         "diverged": bool(sp[optimizer]["diverged"][i])})
    mb = measured["minibatch"]
    for batch in mb["sizes"]:
        for i, eta in enumerate(mb["etas"]):
            rows.append({"problem": "minibatch", "optimizer": "gd", "batch_size": batch, "eta": eta,
                         "u_turn_rate": mb["u_turn_rate"][batch][i], "diverged": bool(mb["diverged"][batch][i]),
                         "gradient_error": mb["gradient_error"].get(batch, np.full(len(mb["etas"]), np.nan))[i]})
    return rows


def _plain(value):
    """A number as JSON has it: a float as its shortest exact text, never (inf, NaN) as null."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def as_json(problem: ToyProblem, claims: Claims, measured: dict) -> str:
    """The record: the settings the numbers were measured at (the toy problem, the sparse and minibatch criteria),
    and one row per measurement (``table``); epochs never reached and ratios with nothing to compare are null."""
    record = {
        "what": "the numbers the lecture's trajectory claims are judged on (judged by the report: "
                "study.report.checks.claims)",
        "toy": problem.model_dump(mode="json"), "sparse": claims.sparse.model_dump(mode="json"),
        "minibatch": claims.minibatch.model_dump(mode="json"),
        "initial_loss": _plain(measured["toy"]["initial_loss"]),
        "rows": [{k: v if isinstance(v, str) else _plain(v) for k, v in row.items()} for row in table(measured)],
    }
    # one line per block of settings and per row: a reader scans the rows, a diff shows the row that moved
    lines = [f" {json.dumps(key)}: {json.dumps(value, allow_nan=False)}," for key, value in record.items()
             if key != "rows"]
    rows = ",\n".join(f"  {json.dumps(row, allow_nan=False)}" for row in record["rows"])
    return "{\n" + "\n".join(lines) + '\n "rows": [\n' + rows + "\n ]\n}\n"


def write_json(path: str | Path, problem: ToyProblem, claims: Claims, measured: dict) -> Path:
    path = Path(path)
    path.write_text(as_json(problem, claims, measured))
    return path
