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

``checkpoints`` (update counts, ``checkpoint_grid``) scores validation (and the watched parts) at those counts too,
inside epochs where an epoch holds several updates: the compiled epoch then runs in parts, one kernel call from one
checkpoint to the next (an epoch without a checkpoint inside is still one call). ``TrainResult.checkpoints`` holds
them, epoch ends included; budgets in updates or seconds are read off them at checkpoint resolution.

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


PER_DECADE = 8  # checkpoints per decade of update counts: at least 4 in every decade of updates (and of seconds)


def checkpoint_grid(updates_per_epoch: int, epochs: int, extra=(), per_decade: int = PER_DECADE) -> np.ndarray:
    """The update counts a run is scored at: every epoch end, a log grid of ``per_decade`` per decade (1, 1.33, 1.78,
    2.37, 3.16, ... rounded; counts below 10 repeat and are kept once), and ``extra`` counts (a budget's cap), all
    within the run's ``epochs`` x ``updates_per_epoch`` updates; sorted, each once."""
    total = updates_per_epoch * epochs
    decades = int(np.ceil(per_decade * np.log10(max(total, 1)))) + 1
    log = np.round(10.0 ** (np.arange(decades) / per_decade)).astype(np.int64)
    ends = updates_per_epoch * np.arange(1, epochs + 1, dtype=np.int64)
    counts = np.concatenate([ends, log, np.asarray(list(extra), dtype=np.int64)])
    return np.unique(counts[(counts >= 1) & (counts <= total)])


@dataclass(frozen=True)
class Checkpoints:
    """Scores at update counts (``checkpoint_grid``): ``values[name]`` is (K, len(updates)), NaN where a member
    had stopped (or had not reached that count: a run cut short). Names: val_loss, val_accuracy (classification)
    and ``<part>_loss`` / ``<part>_accuracy`` of the watched parts."""
    updates: np.ndarray  # (C,) int
    values: dict[str, np.ndarray]

    def member(self, k: int) -> dict[str, np.ndarray]:
        """Member k's columns, ``updates`` among them."""
        return {"updates": self.updates.astype(float), **{name: v[k] for name, v in self.values.items()}}


class _CheckpointBook:
    """Where a run's checkpoint scores go: the counts inside each epoch, and the values as they come."""

    def __init__(self, grid, updates_per_epoch: int, k: int, names):
        self.grid = np.asarray(grid, dtype=np.int64)
        self.per_epoch = updates_per_epoch
        self.values = {name: np.full((k, len(self.grid)), np.nan) for name in names}
        self.column = {int(u): j for j, u in enumerate(self.grid)}

    def inside(self, epoch: int) -> tuple[int, ...]:
        """Counts within epoch ``epoch`` (1-based), as updates into it: 0 < s < updates_per_epoch."""
        start = (epoch - 1) * self.per_epoch
        return tuple(int(u - start) for u in self.grid if start < u < start + self.per_epoch)

    def put(self, updates: int, members: np.ndarray, name: str, values) -> None:
        j = self.column.get(int(updates))
        if j is not None and name in self.values and values is not None:
            self.values[name][members, j] = values

    def result(self) -> Checkpoints:
        return Checkpoints(self.grid, self.values)


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
    checkpoints: Checkpoints | None = None  # scores at update counts, when train(checkpoints=...)

    def final(self, name: str) -> np.ndarray:
        """The last recorded value of a metric per member."""
        h = self.history[name]
        return h[np.arange(h.shape[0]), np.maximum(self.epochs_run - 1, 0)]


def _as_members(hyper: optim.Hyper, k: int) -> dict[str, np.ndarray]:
    return {name: np.broadcast_to(np.asarray(v, float), (k,)).copy() for name, v in hyper.items()}


def _numpy_epoch(net, opt: optim.Optimizer, theta, state, hyper, X, Y, batches: BatchIterator,
                 record: _StepRecorder | None, members: np.ndarray, stops=(), between=None):
    """One epoch the readable way; returns theta, state and per member the summed batch losses (each batch mean
    weighted by its size, or the batch sums of a summed loss) and the summed squared gradient norms. ``record``
    (if any) is handed every update of the members still running (``members``, their original indices);
    ``between(s)`` is called after update s of the epoch for each s in ``stops`` (a checkpoint)."""
    summed = getattr(net, "reduction", "mean") == "sum"
    loss_sum, grad_sq = np.zeros(theta.shape[0]), np.zeros(theta.shape[0])
    grad = np.empty_like(theta)  # reused every step: the update rules never keep a reference to the gradient
    stops = set(stops)
    for step, idx in enumerate(batches.epoch(), start=1):
        Xb, Yb = X[idx], Y[idx]
        point = opt.lookahead({"theta": theta}, state, hyper)["theta"]
        loss, g = net.loss_and_grad(point, Xb, Yb, out=grad)
        updates, state = opt.update({"theta": g}, state, hyper)
        theta += updates["theta"]
        loss_sum += loss if summed else loss * Xb.shape[0]
        grad_sq += np.einsum("kp,kp->k", g, g)
        if record is not None:
            record(members, theta, g, updates["theta"], state)
        if step in stops:
            between(step, theta)
    return theta, state, loss_sum, grad_sq


def train(net, split: Split, optimizer: str, hyper: optim.Hyper, batch_size, epochs: int, seed: int,
          theta0: np.ndarray, callbacks: tuple[EpochCallback, ...] = (), shuffle: bool = True,
          validate: bool = True, record_steps: bool = False, engine: str = "auto",
          watch: tuple[str, ...] = (), checkpoints=None) -> TrainResult:
    """``engine``: "auto" (compiled for an nn.MLP unless ``record_steps``, else readable), "numpy" (the readable
    path, the reference) or "compiled" (an error if the run cannot take it). ``record_steps``: return every update
    as ``TrainResult.steps`` (the readable path: the fused loop keeps no steps). ``watch``: other parts of the
    split ("test") scored after every epoch as ``<part>_loss`` and ``<part>_accuracy``: recorded, never acted on
    (no callback sees them, nothing stops on them), so that a held-out curve can score what validation chose.
    ``checkpoints``: update counts (``checkpoint_grid``) at which validation and the watched parts are scored, also
    inside epochs (``TrainResult.checkpoints``); scoring them is not counted in ``seconds``."""
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
    book = None
    if checkpoints is not None and validate:
        book = _CheckpointBook(checkpoints, batches.steps_per_epoch, k_total,
                               [f"{part}_{m}" for part in ("val", *watch) for m in ("loss", "accuracy")])
    paused = 0.0  # seconds spent scoring checkpoints inside epochs: not what training costs

    def score_parts(at: int, now_theta, now_members) -> None:
        for part in ("val", *watch):
            loss, accuracy = evaluate(now_theta, getattr(split, f"X_{part}"), getattr(split, f"Y_{part}"))
            book.put(at, now_members, f"{part}_loss", loss)
            book.put(at, now_members, f"{part}_accuracy", accuracy)

    threads = compiled.one_blas_thread() if compiled else contextlib.nullcontext()
    with threads, np.errstate(all="ignore"):  # overflow is detected and recorded below, not raised
        for epoch in range(1, epochs + 1):
            stops = book.inside(epoch) if book else ()
            before = updates_done

            def between(step, now_theta=None):
                nonlocal paused
                clock = time.perf_counter()
                score_parts(before + step, theta if now_theta is None else now_theta, members)
                paused += time.perf_counter() - clock

            if compiled:
                state, loss_sum, grad_sq = compiled.epoch(theta, state, hyper, batches.order(), stops, between)
            else:
                theta, state, loss_sum, grad_sq = _numpy_epoch(net, opt, theta, state, hyper, X, Y, batches, record,
                                                               members, stops, between)
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
            metrics["seconds"] = np.full(len(members), time.perf_counter() - started - paused)
            for name, values in metrics.items():
                history[name][members, epoch - 1] = values
            for part in watch:  # after the clock: scoring a held-out part is not what an epoch costs
                loss, accuracy = evaluate(theta, getattr(split, f"X_{part}"), getattr(split, f"Y_{part}"))
                history[f"{part}_loss"][members, epoch - 1] = loss
                if accuracy is not None:
                    history[f"{part}_accuracy"][members, epoch - 1] = accuracy
            if book:  # the epoch end's checkpoint: the scores just taken
                for name in book.values:
                    if name in history:
                        book.put(updates_done, members, name, history[name][members, epoch - 1])
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
                       steps=record.steps() if record else None, checkpoints=book.result() if book else None)
