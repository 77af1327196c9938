"""The training loop: epochs over the batch iterator for a population of K networks at once.

Member k of the population is network ``theta0[k]`` trained with hyperparameters ``hyper[...][k]``; all members
share the data order. A member stops when it diverges (a non-finite loss or parameter) or when a callback asks
(an Optuna pruner); the others go on, and the arrays shrink to the members still running. Callbacks run after
every epoch and carry the epoch's metrics out to whoever listens; nothing here knows about Optuna or MLflow.

Two ways through an epoch, the same mathematics: ``_numpy_epoch`` below, the readable one (the lecture's loop: a
batch, the gradient at the optimizer's look-ahead point, the update), and ``study.core.kernels``' compiled epoch, which
runs the same update rules (``study.core.optim``'s elementwise functions) fused into one numba loop. An ``nn.MLP`` takes
the compiled path unless ``engine="numpy"`` or ``record_steps`` asks for every step; anything else (the lecture's
sigmoid neuron) the readable one. Everything between epochs (metrics, callbacks, divergence, compaction) is shared.
tests/test_kernels.py holds the two paths equal.

``record_steps=True`` returns every step as ``TrainResult.steps`` (a ``Steps``): the parameters, the gradient, the
update applied and the optimizer's own state after each update, in one layout. It is the one trajectory recorder:
the lecture's figures and the numbers its claims are judged on (``study.lecture``) both read it.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from study.core import nn, optim
from study.core.batches import BatchIterator
from study.core.data import Split

# Beyond this multiple of its starting validation loss a run has blown up, even if the numbers are still finite;
# left alone it overflows a few epochs later and meanwhile poisons means and samplers with astronomic values.
BLOWUP_FACTOR = 1e6
METRICS = ("train_loss", "val_loss", "val_accuracy", "grad_norm", "updates", "seconds")
ENGINES = ("auto", "numpy", "compiled")


class EpochCallback(Protocol):
    def __call__(self, epoch: int, metrics: dict[str, np.ndarray], members: np.ndarray) -> np.ndarray | None:
        """``metrics[name][j]`` belongs to member ``members[j]``; return a boolean mask of members to stop."""


@dataclass(frozen=True)
class Steps:
    """Every update of a run, member first, then step, then parameter: (K, steps, P).

    Row 0 of ``theta`` and of each ``state`` array is the start; row s (s >= 1) is after update s. Row s - 1 of
    ``gradient`` and ``update`` belongs to update s, so ``theta[:, s] == theta[:, s - 1] + update[:, s - 1]``
    exactly (the trainer adds the same numbers). A member's rows after it stopped (it diverged, or a callback
    stopped it at the end of an epoch) are NaN, and so are its rows from the first update to parameters that are
    not all finite on, that update's included: a blown-up step has nothing worth reading. The record ends with the
    last update any member made. It holds (3 + len(state)) * K * steps * P floats: ask for it on small problems.
    """
    epoch: np.ndarray  # (S + 1,) the 1-based epoch of each update; 0 for the start
    theta: np.ndarray  # (K, S + 1, P) the parameters
    gradient: np.ndarray  # (K, S, P) where the optimizer asked for it: its look-ahead point (NAG's w - gamma v)
    update: np.ndarray  # (K, S, P) what the rule added to the parameters
    state: dict[str, np.ndarray]  # the optimizer's state arrays by their registry names (momentum's v), (K, S + 1, P)

    def member(self, k: int) -> "Steps":
        """Member k alone, in the same layout (K = 1)."""
        pick = slice(k, k + 1)
        return Steps(self.epoch, self.theta[pick], self.gradient[pick], self.update[pick],
                     {name: a[pick] for name, a in self.state.items()})

    def losses(self, net, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """``net``'s loss on (X, Y) at every recorded point of every member, (K, S + 1); NaN where theta is."""
        k, t, p = self.theta.shape
        flat = self.theta.reshape(k * t, p)
        out = np.full(k * t, np.nan)
        finite = np.isfinite(flat).all(axis=1)
        with np.errstate(all="ignore"):
            out[finite] = net.loss(flat[finite], X, Y)
        return out.reshape(k, t)


class _StepRecorder:
    """Fills a ``Steps`` one update at a time: rows preallocated as NaN, each update writing the rows of the
    members still running (``members``: their original indices), copies of arrays the loop goes on changing."""

    def __init__(self, opt: optim.Optimizer, theta0: np.ndarray, state0, epochs: int, steps_per_epoch: int):
        k, p = theta0.shape
        most = epochs * steps_per_epoch
        self.steps_per_epoch, self.taken = steps_per_epoch, 0
        self.theta = np.full((k, most + 1, p), np.nan)
        self.theta[:, 0] = theta0
        self.gradient, self.update = np.full((k, most, p), np.nan), np.full((k, most, p), np.nan)
        self.state = {name: np.full((k, most + 1, p), np.nan) for name in opt.state}
        for name, a in self.state.items():
            a[:, 0] = getattr(state0, name)["theta"]

    def __call__(self, members: np.ndarray, theta, gradient, update, state) -> None:
        self.taken += 1
        s = self.taken
        self.theta[members, s] = theta
        self.gradient[members, s - 1] = gradient
        self.update[members, s - 1] = update
        for name, a in self.state.items():
            a[members, s] = getattr(state, name)["theta"]

    def steps(self) -> Steps:
        s = self.taken
        theta, gradient, update = self.theta[:, :s + 1], self.gradient[:, :s], self.update[:, :s]
        state = {name: a[:, :s + 1] for name, a in self.state.items()}
        # NaN from a member's first update to a non-finite parameter on, that update included (rows after a stop
        # are NaN already: they were never written)
        blown = ~np.logical_and.accumulate(np.isfinite(theta).all(axis=2), axis=1)
        theta[blown] = np.nan
        for a in state.values():
            a[blown] = np.nan
        gradient[blown[:, 1:]] = np.nan
        update[blown[:, 1:]] = np.nan
        epoch = np.concatenate([[0], np.repeat(np.arange(1, s // self.steps_per_epoch + 2), self.steps_per_epoch)])
        return Steps(epoch[:s + 1], theta, gradient, update, state)


@dataclass
class TrainResult:
    theta: np.ndarray  # (K, P) parameters at the end, or where the member stopped
    history: dict[str, np.ndarray]  # name -> (K, epochs); NaN after a member stopped
    initial_val_loss: np.ndarray  # (K,) before any update: the penalty a diverged tuning trial gets
    diverged: np.ndarray  # (K,) bool
    pruned: np.ndarray  # (K,) bool, stopped by a callback
    epochs_run: np.ndarray  # (K,) int
    extra: dict = field(default_factory=dict)
    steps: Steps | None = None  # every update, when train(record_steps=True)

    def final(self, name: str) -> np.ndarray:
        """The last recorded value of a metric per member."""
        h = self.history[name]
        return h[np.arange(h.shape[0]), np.maximum(self.epochs_run - 1, 0)]


def _as_members(hyper: optim.Hyper, k: int) -> dict[str, np.ndarray]:
    return {name: np.broadcast_to(np.asarray(v, float), (k,)).copy() for name, v in hyper.items()}


def _numpy_epoch(net, opt: optim.Optimizer, theta, state, hyper, X, Y, batches: BatchIterator,
                 record: _StepRecorder | None, members: np.ndarray):
    """One epoch the readable way; returns theta, state and per member the summed batch losses (each batch mean
    weighted by its size, or the batch sums of a summed loss) and the summed squared gradient norms. ``record``
    (if any) is handed every update of the members still running (``members``, their original indices)."""
    summed = getattr(net, "reduction", "mean") == "sum"
    loss_sum, grad_sq = np.zeros(theta.shape[0]), np.zeros(theta.shape[0])
    grad = np.empty_like(theta)  # reused every step: the update rules never keep a reference to the gradient
    for idx in batches.epoch():
        Xb, Yb = X[idx], Y[idx]
        point = opt.lookahead({"theta": theta}, state, hyper)["theta"]
        loss, g = net.loss_and_grad(point, Xb, Yb, out=grad)
        updates, state = opt.update({"theta": g}, state, hyper)
        theta += updates["theta"]
        loss_sum += loss if summed else loss * Xb.shape[0]
        grad_sq += np.einsum("kp,kp->k", g, g)
        if record is not None:
            record(members, theta, g, updates["theta"], state)
    return theta, state, loss_sum, grad_sq


def train(net, split: Split, optimizer: str, hyper: optim.Hyper, batch_size, epochs: int, seed: int,
          theta0: np.ndarray, callbacks: tuple[EpochCallback, ...] = (), shuffle: bool = True,
          validate: bool = True, record_steps: bool = False, engine: str = "auto",
          watch: tuple[str, ...] = ()) -> TrainResult:
    """``engine``: "auto" (compiled for an nn.MLP unless ``record_steps``, else readable), "numpy" (the readable
    path, the reference) or "compiled" (an error if the run cannot take it). ``record_steps``: return every update
    as ``TrainResult.steps`` (the readable path: the fused loop keeps no steps). ``watch``: other parts of the
    split ("test") scored after every epoch as ``<part>_loss`` and ``<part>_accuracy``: recorded, never acted on
    (no callback sees them, nothing stops on them), so that a held-out curve can score what validation chose."""
    opt = optim.OPTIMIZERS[optimizer]
    k_total = theta0.shape[0]
    members = np.arange(k_total)  # original index of each member still running
    hyper = _as_members(hyper, k_total)
    theta = np.array(theta0, dtype=float, order="C")  # a copy: theta0 is left alone
    state = opt.init({"theta": theta})
    X, Y = split.X_train, split.Y_train
    batches = BatchIterator(X.shape[0], batch_size, seed=seed, shuffle=shuffle)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    compiled = None
    if engine != "numpy" and not record_steps and type(net) is nn.MLP:
        from study.core import kernels  # numba loads only when it is used

        if kernels.supports(net, optimizer):
            compiled = kernels.CompiledEpochs(net, optimizer, X, Y, batches.size, epochs)
    if engine == "compiled" and compiled is None:
        raise ValueError(f"the compiled path trains an nn.MLP with a compiled rule and keeps no steps, not "
                         f"{type(net).__name__} with {optimizer}{' and record_steps' if record_steps else ''}")
    evaluate = compiled.evaluate if compiled else net.evaluate

    watched = [f"{part}_{m}" for part in watch for m in ("loss", "accuracy")]
    history = {m: np.full((k_total, epochs), np.nan) for m in (*METRICS, *watched)}
    diverged = np.zeros(k_total, bool)
    pruned = np.zeros(k_total, bool)
    epochs_run = np.zeros(k_total, int)
    final_theta = theta.copy()
    initial_val_loss = evaluate(theta, split.X_val, split.Y_val)[0]
    # train_loss is on the scale of net.loss over the whole training set, whatever the batch size: batch means are
    # weighted by their share of the samples, batch sums (the lecture's neuron, reduction="sum") simply add up
    summed = getattr(net, "reduction", "mean") == "sum"
    updates_done, started = 0, time.perf_counter()
    record = _StepRecorder(opt, theta, state, epochs, batches.steps_per_epoch) if record_steps else None

    threads = compiled.one_blas_thread() if compiled else contextlib.nullcontext()
    with threads, np.errstate(all="ignore"):  # overflow is detected and recorded below, not raised
        for epoch in range(1, epochs + 1):
            if compiled:
                state, loss_sum, grad_sq = compiled.epoch(theta, state, hyper, batches.order())
            else:
                theta, state, loss_sum, grad_sq = _numpy_epoch(net, opt, theta, state, hyper, X, Y, batches, record,
                                                               members)
            updates_done += batches.steps_per_epoch
            metrics = {
                # the epoch's mean of batch losses, as scikit-learn reports (their sum for a summed loss)
                "train_loss": loss_sum if summed else loss_sum / X.shape[0],
                "grad_norm": np.sqrt(grad_sq / batches.steps_per_epoch),  # RMS over the epoch's updates
                "updates": np.full(len(members), float(updates_done)),
            }
            if validate:
                metrics["val_loss"], metrics["val_accuracy"] = evaluate(theta, split.X_val, split.Y_val)
                if metrics["val_accuracy"] is None:
                    del metrics["val_accuracy"]
            metrics["seconds"] = np.full(len(members), time.perf_counter() - started)
            for name, values in metrics.items():
                history[name][members, epoch - 1] = values
            for part in watch:  # after the clock: scoring a held-out part is not what an epoch costs
                loss, accuracy = evaluate(theta, getattr(split, f"X_{part}"), getattr(split, f"Y_{part}"))
                history[f"{part}_loss"][members, epoch - 1] = loss
                if accuracy is not None:
                    history[f"{part}_accuracy"][members, epoch - 1] = accuracy
            epochs_run[members] = epoch

            blown = ~np.isfinite(theta).all(axis=1) | ~np.isfinite(metrics["train_loss"])
            if validate:
                blown |= ~np.isfinite(metrics["val_loss"])
                blown |= metrics["val_loss"] > BLOWUP_FACTOR * initial_val_loss[members]
            stop = blown.copy()
            for callback in callbacks:
                asked = callback(epoch, metrics, members)
                if asked is not None:
                    pruned[members[np.asarray(asked) & ~blown]] = True
                    stop |= np.asarray(asked, bool)
            diverged[members[blown]] = True
            if stop.any():
                final_theta[members[stop]] = theta[stop]
                keep = ~stop
                members, theta = members[keep], theta[keep]
                state = optim.select_members(state, keep)
                hyper = {n: v[keep] for n, v in hyper.items()}
                if len(members) == 0:
                    break
    final_theta[members] = theta
    return TrainResult(final_theta, history, initial_val_loss, diverged, pruned, epochs_run,
                       steps=record.steps() if record else None)
