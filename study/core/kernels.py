"""Compiled epochs for the MLP: the fast path of ``study.core.train`` (numba).

One call of ``epoch`` trains K networks through one whole epoch: for each member and each batch it takes the
gradient at the optimizer's look-ahead point (forward, softmax cross-entropy or squared error, backward) and applies
the update rule, fused into one pass over the P parameters. Python calls it once per epoch and keeps the epoch-level
bookkeeping (history, callbacks, divergence, compaction) in ``study.core.train``, exactly as on the readable path.

What is compiled and what is not:
- the update rules are **not** rewritten here: ``study.core.optim``'s elementwise ``*_rule`` functions, the ones its
  readable ``*_update`` functions run on numpy arrays, are compiled as they are into the per-parameter loop;
- the network is ``study.core.nn.MLP``'s mathematics, compiled in ``study.core.mlp_kernels`` (any number of layers;
  relu, tanh, sigmoid; softmax cross-entropy or 0.5 mean squared error), on its flat (K, P) layout;
- Adam's bias corrections 1 - beta^t come from ``optim.adam_corrections``, computed in numpy for many steps ahead
  before the call (numba's pow and numpy's differ in the last bit);
- the sum of squared gradients (the grad_norm metric) is a separate pass, so that the update loop stays a plain
  elementwise loop that LLVM vectorises.

The readable path is the reference: tests/test_kernels.py runs both on every optimizer, batch mode, activation,
task and population size and requires the same parameters and metrics: bitwise for the rules; to 1e-12 for whole
runs, where the matrix products sum in another order (another BLAS call, or loops for single samples) and exp, log
and tanh are libm's instead of numpy's SIMD versions, so a gradient's last bits differ.
An optimizer without a compiled rule here (a new one in ``optim.OPTIMIZERS``) simply trains on the readable path.

Members never interact: member k's numbers are the same whether it trains alone or beside others.
"""
from __future__ import annotations

import contextlib

import numpy as np

from study.core import nn, optim
from study.core.jit import inline, jit, jit_sum
from study.core.mlp_kernels import evaluate as evaluate_members, loss_and_grad, loss_and_grad_one_hidden

# Batches of at most this many samples multiply with plain loops; larger ones call BLAS (np.dot), whose per-call
# overhead (about half a microsecond) pays off from two samples on: measured on digits 64-32-10 (momentum, ms per
# epoch, loops / BLAS): batch 1 2.45 / 2.83, batch 2 1.68 / 1.62, batch 4 1.33 / 0.97, batch 8 1.07 / 0.60.
SMALL = 1
CORRECTIONS_AHEAD = 1 << 16  # Adam's bias corrections are computed for about this many (member, step) pairs at once

ACTIVATIONS = {"relu": 0, "tanh": 1, "sigmoid": 2}
TASKS = {"classification": 0, "regression": 1}
RULES = {"gd": 0, "momentum": 1, "nag": 2, "adagrad": 3, "rmsprop": 4, "adam": 5}
# The hyperparameters each rule reads, in the order of the columns of the (K, 4) matrix the kernel gets.
RULE_HYPER = {"gd": ("eta",), "momentum": ("eta", "gamma"), "nag": ("eta", "gamma"), "adagrad": ("eta", "eps"),
              "rmsprop": ("eta", "beta", "eps"), "adam": ("eta", "beta1", "beta2", "eps")}
# The optimizer state's (K, P) arrays the kernel updates in place: (s1, s2) by field name.
RULE_STATE = {"gd": (), "momentum": ("v",), "nag": ("v",), "adagrad": ("v",), "rmsprop": ("v",), "adam": ("m", "v")}


# The single source of truth, compiled.
gd_rule = inline(optim.gd_rule)
momentum_rule = inline(optim.momentum_rule)
nag_lookahead_rule = inline(optim.nag_lookahead_rule)
adagrad_rule = inline(optim.adagrad_rule)
rmsprop_rule = inline(optim.rmsprop_rule)
adam_rule = inline(optim.adam_rule)


@jit_sum
def _sum_of_squares(g):
    """sum(g * g), its terms added in any order (vectorised): a metric, not an update, so only the sum matters."""
    total = 0.0
    for i in range(g.shape[0]):
        total += g[i] * g[i]
    return total


# --- the update, fused over the P parameters of one member -----------------------------------------------------------
@jit
def _apply_rule(rule, g, w, s1, s2, h, c1, c2):
    """w += the rule's update for the gradient g; the state rows s1, s2 updated in place."""
    P = g.shape[0]
    eta = h[0]
    if rule == 0:
        for i in range(P):
            w[i] += gd_rule(g[i], eta)
    elif rule == 1 or rule == 2:
        for i in range(P):
            u, s1[i] = momentum_rule(g[i], s1[i], eta, h[1])
            w[i] += u
    elif rule == 3:
        for i in range(P):
            u, s1[i] = adagrad_rule(g[i], s1[i], eta, h[1])
            w[i] += u
    elif rule == 4:
        for i in range(P):
            u, s1[i] = rmsprop_rule(g[i], s1[i], eta, h[1], h[2])
            w[i] += u
    else:
        for i in range(P):
            u, s1[i], s2[i] = adam_rule(g[i], s1[i], s2[i], eta, h[1], h[2], h[3], c1, c2)
            w[i] += u


@jit
def _look_ahead(w, v, gamma, out):
    """out = NAG's look-ahead point w - gamma v, element by element."""
    for i in range(w.shape[0]):
        out[i] = nag_lookahead_rule(w[i], v[i], gamma)


# --- one epoch --------------------------------------------------------------------------------------------------
@jit
def epoch(X, Y, order, batch, theta, s1, s2, H, C, c0, sizes, woff, boff, act, task, rule, small, loss_sum, grad_sq):
    """Train every member (row of theta) through one epoch in place.

    X, Y       the training set; ``order`` the epoch's permutation of its rows (empty: their own order)
    batch      samples per update; the last batch of an epoch may be smaller
    theta      (K, P) parameters; s1, s2 (K, P) the optimizer's state arrays (RULE_STATE), unused ones (K, 0)
    H          (K, 4) hyperparameters by RULE_HYPER
    C, c0      Adam's bias corrections: C[k, c0 + s] those of the epoch's step s for member k (else empty)
    sizes, woff, boff   the network: layer sizes, offsets of each layer's W and b inside a row of theta
    act, task, rule     codes of ACTIVATIONS, TASKS, RULES; small: see SMALL
    loss_sum, grad_sq   (K,) accumulate batch loss x batch size and the squared gradient norm per update
    """
    n = X.shape[0]
    K, P = theta.shape
    if order.shape[0] == 0:
        Xe, Ye = X, Y
    else:  # gather the epoch's samples once: every batch is then a contiguous block
        Xe, Ye = np.empty_like(X), np.empty_like(Y)
        for r in range(n):
            Xe[r] = X[order[r]]
            Ye[r] = Y[order[r]]
    b_max = min(batch, n)
    width = 0
    for layer in range(1, sizes.shape[0]):
        width = max(width, sizes[layer])
    work = np.empty(b_max * (sizes[1:].sum()))
    delta = np.empty(2 * b_max * width)
    g = np.empty(P)
    look = np.empty(P)
    one_hidden = sizes.shape[0] == 3
    d, m, c = sizes[0], sizes[1], sizes[-1]
    m = m if one_hidden else 0  # (views of the one-hidden-layer path: empty when it is not taken)
    A, dA, Z = work[:b_max * m].reshape(b_max, m), delta[:b_max * m].reshape(b_max, m), np.empty((b_max, c))
    gW1, gb1 = g[woff[0]:woff[0] + d * m].reshape(d, m), g[boff[0]:boff[0] + m]
    gW2, gb2 = g[woff[-1]:woff[-1] + m * c].reshape(m, c), g[boff[-1]:boff[-1] + c]
    for k in range(K):
        w, h, v1, v2 = theta[k], H[k], s1[k], s2[k]
        point = look if rule == 2 else w  # NAG takes its gradient at the look-ahead point
        W1, b1 = point[woff[0]:woff[0] + d * m].reshape(d, m), point[boff[0]:boff[0] + m]
        W2, b2 = point[woff[-1]:woff[-1] + m * c].reshape(m, c), point[boff[-1]:boff[-1] + c]
        step = 0
        for start in range(0, n, batch):
            b = min(batch, n - start)
            xb, yb = Xe[start:start + b], Ye[start:start + b]
            if rule == 2:  # NAG: the gradient at w - gamma v
                _look_ahead(w, v1, h[1], look)
            if one_hidden:
                loss = loss_and_grad_one_hidden(xb, yb, W1, b1, W2, b2, gW1, gb1, gW2, gb2, A[:b], Z[:b], dA[:b],
                                                 act, task, small)
            else:
                loss = loss_and_grad(xb, yb, point, g, sizes, woff, boff, work, delta, act, task, small)
            c1, c2 = (C[k, c0 + step, 0], C[k, c0 + step, 1]) if rule == 5 else (1.0, 1.0)
            _apply_rule(rule, g, w, v1, v2, h, c1, c2)
            loss_sum[k] += loss * b
            grad_sq[k] += _sum_of_squares(g)
            step += 1


# --- the driver ----------------------------------------------------------------------------------------------------
def supports(net, optimizer: str) -> bool:
    """The compiled path trains exactly nn.MLP (a subclass or a wrapper may change its mathematics) with the rules
    compiled here."""
    return type(net) is nn.MLP and net.activation in ACTIVATIONS and net.task in TASKS and optimizer in RULES


_threads = []  # the threadpoolctl controller, made on first use (it must see the BLAS numba calls, loaded by then)


def one_blas_thread():
    """A context in which BLAS runs on one thread. The products here are far too small to share: with two threads
    on a busy two-core machine a digits epoch took 25-60 ms instead of 0.45 ms (threads spinning for a core)."""
    if not _threads:
        import scipy.linalg.cython_blas  # noqa: F401  numba's np.dot calls this BLAS
        from threadpoolctl import ThreadpoolController

        _threads.append(ThreadpoolController().select(user_api="blas"))
    if all(lib.num_threads == 1 for lib in _threads[0].lib_controllers):
        return contextlib.nullcontext()  # the sweep's workers and the bench: already so
    return _threads[0].limit(limits=1)


def _c(a, dtype=float):
    return np.ascontiguousarray(a, dtype=dtype)


class CompiledEpochs:
    """Everything one training call needs, prepared once: the network's layout, the data as contiguous arrays."""

    def __init__(self, net: nn.MLP, optimizer: str, X, Y, batch: int, epochs: int, small: int = SMALL):
        self.optimizer, self.rule = optimizer, RULES[optimizer]
        self.act, self.task, self.small, self.batch = ACTIVATIONS[net.activation], TASKS[net.task], small, batch
        blocks = {name: start for name, start, _, _ in nn._blocks(net.layout)}
        self.sizes = np.asarray(net.sizes, np.int64)
        self.woff = np.array([blocks[f"W{i}"] for i in range(1, net.n_layers + 1)], np.int64)
        self.boff = np.array([blocks[f"b{i}"] for i in range(1, net.n_layers + 1)], np.int64)
        self.X, self.Y = _c(X), _c(Y)
        self.steps = -(-self.X.shape[0] // batch)
        self.total_steps = epochs * self.steps
        self._no_order = np.empty(0, np.int64)
        self._eval = self._hyper = self._corrections = None  # prepared once, reused while they fit

    one_blas_thread = staticmethod(one_blas_thread)

    def state_arrays(self, state, k: int):
        """The state's (K, P) arrays the rule updates in place; (K, 0) placeholders for those it has not."""
        arrays = [getattr(state, name)["theta"] for name in RULE_STATE[self.optimizer]]
        return arrays + [np.empty((k, 0))] * (2 - len(arrays))

    def hyper_matrix(self, hyper: dict, k: int) -> np.ndarray:
        """(K, 4): column j holds the hyperparameter RULE_HYPER[optimizer][j] of every member."""
        if self._hyper is None or self._hyper[0] is not hyper:  # the same dict until members stop
            H = np.zeros((k, 4))
            for column, name in enumerate(RULE_HYPER[self.optimizer]):
                H[:, column] = hyper[name]
            self._hyper = (hyper, H)
        return self._hyper[1]

    def corrections(self, count: int, hyper: dict, k: int) -> tuple[np.ndarray, int]:
        """Adam's 1 - beta^t per member for steps t = count + 1 ..., as (C, c0): C[k, c0 + s] is step s of this
        epoch. Worked out for several epochs at once (numpy's per-call cost would rival a small epoch's)."""
        if self.optimizer != "adam":
            return np.empty((k, 0, 2)), 0
        cached = self._corrections
        if cached is None or cached[0] is not hyper or not cached[1] <= count <= cached[2] - self.steps:
            ahead = min(max(self.steps, CORRECTIONS_AHEAD // k // self.steps * self.steps), self.total_steps - count)
            t = np.arange(count + 1, count + ahead + 1, dtype=float)[None, :]
            c1, c2 = optim.adam_corrections(t, np.asarray(hyper["beta1"])[:, None], np.asarray(hyper["beta2"])[:, None])
            cached = self._corrections = (hyper, count, count + ahead, np.ascontiguousarray(np.stack([c1, c2], 2)))
        return cached[3], count - cached[1]

    def epoch(self, theta, state, hyper: dict, order):
        """One epoch in place on theta and the state's arrays; returns (state, loss_sum, grad_sq) per member."""
        k = theta.shape[0]
        s1, s2 = self.state_arrays(state, k)
        loss_sum, grad_sq = np.zeros(k), np.zeros(k)
        C, c0 = self.corrections(state.count, hyper, k)
        epoch(self.X, self.Y, self._no_order if order is None else order, self.batch, theta, s1, s2,
              self.hyper_matrix(hyper, k), C, c0, self.sizes, self.woff, self.boff, self.act, self.task, self.rule,
              self.small, loss_sum, grad_sq)
        return state._replace(count=state.count + self.steps), loss_sum, grad_sq

    def evaluate(self, theta, X, Y):
        """As nn.MLP.evaluate: loss per member and accuracy (None for regression)."""
        if self._eval is None or self._eval[0] is not X or self._eval[1] is not Y:  # prepared once per set
            self._eval = (X, Y, _c(X), _c(Y), _c(Y.argmax(axis=1), np.int64))
        k = theta.shape[0]
        loss, acc = np.empty(k), np.empty(k)
        evaluate_members(*self._eval[2:], theta, self.sizes, self.woff, self.boff, self.act, self.task, self.small,
                         loss, acc)
        return loss, (acc if self.task == 0 else None)
