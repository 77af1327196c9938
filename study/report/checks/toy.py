"""The lecture's trajectory claims, recomputed with the numeric core on small problems (deterministic, ~1 s).

Nothing here reads the sweep or the ``lecture`` experiment: each function trains a population of K networks, one
per learning rate of a grid (study.core.train's population axis), records every update with ``on_step``, and measures
what a claim is about: epochs to leave the plateau or reach the target, u-turns (sign changes of the update along
a parameter), the path length of each weight, the error of mini-batch gradients.
"""
from __future__ import annotations

import math

import numpy as np

from study.core import data, nn, optim, train
from study.core.batches import BatchIterator, resolve
from study.schema.report import MinibatchCriteria, SparseCriteria, ToyProblem


def trajectory(net, split, optimizer: str, hyper: dict, batch_size, epochs: int, theta0: np.ndarray, seed: int = 0):
    """Parameters after every update, (K, steps + 1, P), NaN after a member stopped (diverged); and diverged (K,)."""
    recorded = []
    result = train.train(net, split, optimizer, hyper, batch_size, epochs, seed, theta0, validate=False,
                         on_step=lambda theta: recorded.append(theta.copy()))
    k, n = theta0.shape[0], split.X_train.shape[0]
    per_epoch = math.ceil(n / resolve(batch_size, n))
    path = np.full((k, len(recorded) + 1, theta0.shape[1]), np.nan)
    path[:, 0] = theta0
    for step, theta in enumerate(recorded, start=1):
        running = np.flatnonzero(result.epochs_run >= math.ceil(step / per_epoch))  # members still training
        path[running, step] = theta
    finite = np.isfinite(path).all(axis=2)
    path[~np.logical_and.accumulate(finite, axis=1)] = np.nan  # a blown-up step and everything after it
    return path, result.diverged | ~finite.all(axis=1)


def u_turns(path: np.ndarray, min_update: float) -> tuple[np.ndarray, np.ndarray]:
    """Per member: the number of u-turns (consecutive updates of opposite sign along one parameter, both larger
    than ``min_update``) and the number of consecutive update pairs that could have been one."""
    step = np.diff(path, axis=1)
    moving = np.abs(step) > min_update
    pairs = moving[:, 1:] & moving[:, :-1]
    turned = (np.sign(step[:, 1:]) * np.sign(step[:, :-1]) < 0) & pairs
    return turned.sum(axis=(1, 2)), pairs.sum(axis=(1, 2))


def losses(net, split, path: np.ndarray) -> np.ndarray:
    """Training loss at every point of every member's path, (K, steps + 1)."""
    k, t, p = path.shape
    flat = path.reshape(k * t, p)
    out = np.full(k * t, np.nan)
    ok = np.isfinite(flat).all(axis=1)
    with np.errstate(all="ignore"):
        out[ok] = net.loss(flat[ok], split.X_train, split.Y_train)
    return out.reshape(k, t)


def first_step_below(curve: np.ndarray, level: float) -> float:
    hits = np.flatnonzero(curve <= level)
    return float(hits[0]) if len(hits) else math.inf


# --- the lecture's toy problem ---------------------------------------------------------------------------------
def lecture_toy(problem: ToyProblem) -> dict:
    """Every optimizer on the lecture's sigmoid neuron over the learning-rate grid, full batch.

    Returns {optimizer: {"path", "loss", "diverged", "escape", "target", "u_turns", "b_step_decay"}} where escape
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
    for optimizer in ("gd", "momentum", "nag", "adagrad", "rmsprop", "gd_raised", "gd_effective"):
        rule, grid = optimizer.split("_")[0], etas
        if optimizer == "gd_raised":  # GD again, on the ladder of raised learning rates
            grid = np.asarray(cfg.raised_etas, float)
        if optimizer == "gd_effective":  # GD at momentum's terminal step eta / (1 - gamma): same effective step
            grid = etas / (1.0 - problem.gamma)
        hyper = optim.hyperparameters(rule, eta=grid, **extra.get(rule, {}))
        start = np.repeat(theta0[:1], len(grid), axis=0)
        path, diverged = trajectory(net, split, rule, hyper, "full", int(problem.epochs), start)
        loss = losses(net, split, path)
        turns, _ = u_turns(path, float(cfg.min_update))
        runs[optimizer] = {
            "etas": grid, "path": path, "loss": loss, "diverged": diverged, "u_turns": turns,
            "escape": np.array([first_step_below(c, cfg.escape_fraction * initial) for c in loss]),
            "target": np.array([first_step_below(c, cfg.target_fraction * initial) for c in loss]),
            "b_step_decay": (_adaptive_decay(net, split, path, optimizer, problem)
                             if optimizer in ("adagrad", "rmsprop") else None)}
    return runs


def _adaptive_decay(net, split, path, optimizer, problem: ToyProblem) -> np.ndarray:
    """Last effective step on b, eta / (sqrt(v) + eps), over the first; v recomputed from the gradients at the
    recorded points (AdaGrad: their sum of squares; RMSProp: their exponential average)."""
    k, t, p = path.shape
    flat = np.nan_to_num(path[:, :-1].reshape(k * (t - 1), p))
    _, grads = net.loss_and_grad(flat, split.X_train, split.Y_train)
    g_b = grads[:, -1].reshape(k, t - 1)
    g_b[~np.isfinite(path[:, 1:]).all(axis=2)] = np.nan
    out = np.full(k, np.nan)
    for member in range(k):
        g = g_b[member][np.isfinite(g_b[member])]
        if len(g) == 0:
            continue
        if optimizer == "adagrad":
            v = np.cumsum(g * g)
        else:
            v = np.zeros(len(g))
            acc = 0.0
            for i, gi in enumerate(g):
                acc = problem.beta * acc + (1 - problem.beta) * gi * gi
                v[i] = acc
        out[member] = (np.sqrt(v[0]) + problem.eps) / (np.sqrt(v[-1]) + problem.eps)
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
        path, diverged = trajectory(net, split, optimizer, optim.hyperparameters(optimizer, eta=etas), "full",
                                    int(cfg.epochs), theta0)
        travelled = np.nansum(np.abs(np.diff(path, axis=1)), axis=1)  # (K, P)
        per_feature = np.abs(net.unpack(travelled)["W1"]).sum(axis=2)  # (K, features)
        ratio = per_feature[:, rare].mean(axis=1) / per_feature[:, common].mean(axis=1)
        out[optimizer] = {"per_feature": per_feature, "ratio": np.where(diverged, np.nan, ratio),
                          "diverged": diverged}
    return out


# --- mini-batches: oscillation and gradient accuracy ---------------------------------------------------------------
def minibatch(cfg: MinibatchCriteria, min_update: float) -> dict:
    """Plain GD on softmax regression at each batch size and learning rate: the u-turn rate (u-turns per
    consecutive update pair and parameter); and the relative error of mini-batch gradients at the points
    full-batch GD reaches, averaged over one epoch of batches."""
    split = data.load(cfg.dataset, seed=int(cfg.seed))
    net = nn.MLP((split.n_features, split.n_outputs))
    etas = np.asarray(cfg.etas, float)
    theta0 = net.init(int(cfg.seed), population=len(etas))
    n = split.X_train.shape[0]
    sizes = [str(b) for b in cfg.batch_sizes]
    rate, diverged = {}, {}
    for batch in sizes:
        path, blown = trajectory(net, split, "gd", {"eta": etas}, batch, int(cfg.epochs), theta0,
                                 seed=int(cfg.seed))
        turns, pairs = u_turns(path, min_update)
        rate[batch] = np.where(pairs > 0, turns / np.maximum(pairs, 1), np.nan)
        diverged[batch] = blown
    # gradient error at the points full-batch GD reaches after `gradient_epochs` epochs
    path, blown = trajectory(net, split, "gd", {"eta": etas}, "full", int(cfg.gradient_epochs), theta0)
    points = np.nan_to_num(path[:, -1])
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
