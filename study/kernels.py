"""Compiled epochs for the MLP: the fast path of ``study.train`` (numba).

One call of ``epoch`` trains K networks through one whole epoch: for each member and each batch it takes the
gradient at the optimizer's look-ahead point (forward, softmax cross-entropy or squared error, backward) and applies
the update rule, fused into one pass over the P parameters. Python calls it once per epoch and keeps the epoch-level
bookkeeping (history, callbacks, divergence, compaction) in ``study.train``, exactly as on the readable path.

What is compiled and what is not:
- the update rules are **not** rewritten here: ``study.optim``'s elementwise ``*_rule`` functions, the ones its
  readable ``*_update`` functions run on numpy arrays, are compiled as they are into the per-parameter loop;
- the network is ``study.nn.MLP``'s mathematics (any number of layers; relu, tanh, sigmoid; softmax cross-entropy
  or 0.5 mean squared error), with its flat (K, P) layout read from ``net.layout``;
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
import hashlib
import os

import numba as nb
import numpy as np
from numba.core import caching

from study import nn, optim

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


# --- the cache: numba keys a cached function on its own file only, but these kernels compile study/optim.py's rules
# too; so that editing a rule recompiles instead of loading a stale kernel, the stamp covers both files.
_SOURCES = (os.path.abspath(__file__), os.path.abspath(optim.__file__))


def _sources_stamp(self):
    digest = hashlib.sha256()
    for path in _SOURCES:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


class _InTreeLocator(caching.InTreeCacheLocator):
    get_source_stamp = _sources_stamp

    @classmethod
    def from_function(cls, py_func, py_file):
        return super().from_function(py_func, py_file) if os.path.abspath(py_file) == _SOURCES[0] else None


class _UserLocator(caching.UserProvidedCacheLocator):  # NUMBA_CACHE_DIR, when set, wins as in numba
    get_source_stamp = _sources_stamp

    @classmethod
    def from_function(cls, py_func, py_file):
        return super().from_function(py_func, py_file) if os.path.abspath(py_file) == _SOURCES[0] else None


for _locator in (_InTreeLocator, _UserLocator):  # numba tries these in order; ours only claim this file
    if _locator not in caching.CacheImpl._locator_classes:
        caching.CacheImpl._locator_classes.insert(0, _locator)

_jit = nb.njit(cache=True, error_model="numpy")  # numpy's error model: 1/0 is inf and no exception, as in numpy
# The small matrix products may fuse multiply-adds and regroup their sums, as BLAS does: they are sums in some
# order either way (the update rules never get these flags: they must be the readable rules' exact arithmetic).
_jit_products = nb.njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
_inline = nb.njit(inline="always", error_model="numpy")
_jit_inline = nb.njit(cache=True, inline="always", error_model="numpy")  # inlined where called: no call overhead

# The single source of truth, compiled.
gd_rule = _inline(optim.gd_rule)
momentum_rule = _inline(optim.momentum_rule)
nag_lookahead_rule = _inline(optim.nag_lookahead_rule)
adagrad_rule = _inline(optim.adagrad_rule)
rmsprop_rule = _inline(optim.rmsprop_rule)
adam_rule = _inline(optim.adam_rule)


# --- the network ---------------------------------------------------------------------------------------------------
@_jit
def _add_bias_and_activate(z, bias, act):
    """In place: z + bias, then the activation of nn.ACTIVATIONS (act -1: none, the output layer's logits).
    relu as np.maximum(z, 0): a NaN stays NaN."""
    b, m = z.shape
    if act == 0:
        for r in range(b):
            for j in range(m):
                a = z[r, j] + bias[j]
                z[r, j] = 0.0 if a < 0.0 else a
    elif act == 1:
        for r in range(b):
            for j in range(m):
                z[r, j] = np.tanh(z[r, j] + bias[j])
    elif act == 2:
        for r in range(b):
            for j in range(m):
                z[r, j] = 1.0 / (1.0 + np.exp(-(z[r, j] + bias[j])))  # scipy's expit
    else:
        for r in range(b):
            for j in range(m):
                z[r, j] += bias[j]


@_jit
def _times_derivative(d, a, act):
    """In place: d *= the activation's derivative, expressed through its output a (as nn.ACTIVATIONS)."""
    b, m = d.shape
    if act == 0:
        for r in range(b):
            for j in range(m):
                d[r, j] *= 1.0 if a[r, j] > 0.0 else 0.0
    elif act == 1:
        for r in range(b):
            for j in range(m):
                d[r, j] *= 1.0 - a[r, j] * a[r, j]
    else:
        for r in range(b):
            for j in range(m):
                d[r, j] *= a[r, j] * (1.0 - a[r, j])


@_jit_products
def _matmul(a, w, out, small):
    """out = a @ w: loops for a few rows, BLAS beyond."""
    b, fan_in = a.shape
    fan_out = w.shape[1]
    if b > small:
        np.dot(a, w, out)
        return
    for r in range(b):
        x = a[r, 0]
        for j in range(fan_out):
            out[r, j] = x * w[0, j]
        for i in range(1, fan_in):
            x = a[r, i]
            for j in range(fan_out):
                out[r, j] += x * w[i, j]


@_jit_products
def _matmul_wt(d, w, out, small):
    """out = d @ w.T (the chain rule through a layer's weights)."""
    b, fan_out = d.shape
    fan_in = w.shape[0]
    if b > small:
        np.dot(d, w.T, out)
        return
    for r in range(b):
        for i in range(fan_in):
            acc = 0.0
            for j in range(fan_out):
                acc += d[r, j] * w[i, j]
            out[r, i] = acc


@_jit_products
def _matmul_at(a, d, out, small):
    """out = a.T @ d (a layer's weight gradient, summed over the batch)."""
    b, fan_in = a.shape
    fan_out = d.shape[1]
    if b > small:
        np.dot(a.T, d, out)
        return
    for i in range(fan_in):
        x = a[0, i]
        for j in range(fan_out):
            out[i, j] = x * d[0, j]
    for r in range(1, b):
        for i in range(fan_in):
            x = a[r, i]
            for j in range(fan_out):
                out[i, j] += x * d[r, j]


@_jit_inline
def _layer_forward(h_in, weights, bias, out, act, small):
    """out = act(h_in @ weights + bias); act -1: none (the output layer's logits)."""
    _matmul(h_in, weights, out, small)
    _add_bias_and_activate(out, bias, act)


@_jit_inline
def _layer_backward(h_in, d, weights, g_weights, g_bias, d_prev, act, small):
    """From d = dL/dz of a layer: dL/dW = h_in^T d and dL/db = d, summed over the batch; then, unless d_prev is
    empty (the first layer), the chain rule into the previous layer: d_prev = (d @ W^T) * act'(h_in)."""
    _matmul_at(h_in, d, g_weights, small)
    g_bias[:] = 0.0
    for r in range(d.shape[0]):  # row by row: contiguous, and each sum still runs over r in order
        for j in range(d.shape[1]):
            g_bias[j] += d[r, j]
    if d_prev.shape[1] > 0:
        _matmul_wt(d, weights, d_prev, small)
        _times_derivative(d_prev, h_in, act)


@_jit
def _forward(x, w, sizes, woff, boff, work, act, small):
    """Every layer's output for the batch x, each a C-contiguous (b, size) view into ``work`` (the last: logits)."""
    b = x.shape[0]
    layers = sizes.shape[0] - 1
    h = x
    offset = 0
    for layer in range(layers):
        fan_in, fan_out = sizes[layer], sizes[layer + 1]
        z = work[offset:offset + b * fan_out].reshape(b, fan_out)
        _layer_forward(h, w[woff[layer]:woff[layer] + fan_in * fan_out].reshape(fan_in, fan_out),
                       w[boff[layer]:boff[layer] + fan_out], z, act if layer < layers - 1 else -1, small)
        h = z
        offset += b * fan_out
    return offset - b * sizes[layers]  # where the logits start


@_jit
def _output_loss(z, y, task):
    """The batch's mean loss; z becomes dL/dz in place (as nn.MLP._output_loss)."""
    b, c = z.shape
    loss = 0.0
    if task == 0:  # softmax cross-entropy
        for r in range(b):
            zmax = z[r, 0]
            for j in range(1, c):
                if z[r, j] > zmax:
                    zmax = z[r, j]
            se, zy, ys = 0.0, 0.0, 0.0
            for j in range(c):
                zs = z[r, j] - zmax  # shifted: stable for large logits
                zy += zs * y[r, j]
                ys += y[r, j]
                z[r, j] = np.exp(zs)  # one exp per logit
                se += z[r, j]
            loss -= zy - np.log(se) * ys  # -sum_j y_j log p_j, log p_j = zs_j - log(se)
            for j in range(c):
                z[r, j] = (z[r, j] / se - y[r, j]) / b  # d(mean CE)/dz = (softmax - onehot) / b
        return loss / b
    size = b * c  # 0.5 mean squared error over all outputs
    for r in range(b):
        for j in range(c):
            e = z[r, j] - y[r, j]
            loss += e * e
            z[r, j] = e / size
    return 0.5 * loss / size


@_jit
def _loss_and_grad(x, y, w, g, sizes, woff, boff, work, delta, act, task, small):
    """Backpropagation for one member and one batch, any depth: the mean loss; the gradient into g (P,)."""
    b = x.shape[0]
    layers = sizes.shape[0] - 1
    logits = _forward(x, w, sizes, woff, boff, work, act, small)
    d = work[logits:logits + b * sizes[layers]].reshape(b, sizes[layers])
    loss = _output_loss(d, y, task)  # d = dL/dz of the current layer
    offset = logits
    spare = 0  # which half of `delta` receives the previous layer's dL/dz
    half = delta.shape[0] // 2
    for layer in range(layers - 1, -1, -1):
        fan_in, fan_out = sizes[layer], sizes[layer + 1]
        if layer > 0:
            offset -= b * fan_in
            h_in = work[offset:offset + b * fan_in].reshape(b, fan_in)
        else:
            h_in = x
        n_prev = fan_in if layer > 0 else 0  # no dL/dz for the inputs
        d_prev = delta[spare * half:spare * half + b * n_prev].reshape(b, n_prev)
        _layer_backward(h_in, d, w[woff[layer]:woff[layer] + fan_in * fan_out].reshape(fan_in, fan_out),
                        g[woff[layer]:woff[layer] + fan_in * fan_out].reshape(fan_in, fan_out),
                        g[boff[layer]:boff[layer] + fan_out], d_prev, act, small)
        d = d_prev
        spare = 1 - spare
    return loss


@_jit_inline
def _loss_and_grad_one_hidden(x, y, W1, b1, W2, b2, gW1, gb1, gW2, gb2, h, z, dh, act, task, small):
    """The same for the sweep's network, one hidden layer, with every view made by the caller once per epoch
    (numba counts references to each view it makes; per step that cost as much as a small network's arithmetic)."""
    _layer_forward(x, W1, b1, h, act, small)
    _layer_forward(h, W2, b2, z, -1, small)
    loss = _output_loss(z, y, task)  # z becomes dL/dz
    _layer_backward(h, z, W2, gW2, gb2, dh, act, small)
    _layer_backward(x, dh, W1, gW1, gb1, z[:0].reshape(x.shape[0], 0), act, small)  # no dL/dz for the inputs
    return loss


@nb.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _sum_of_squares(g):
    """sum(g * g), its terms added in any order (vectorised): a metric, not an update, so only the sum matters."""
    total = 0.0
    for i in range(g.shape[0]):
        total += g[i] * g[i]
    return total


# --- the update, fused over the P parameters of one member -----------------------------------------------------------
@_jit
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


@_jit
def _look_ahead(w, v, gamma, out):
    """out = NAG's look-ahead point w - gamma v, element by element."""
    for i in range(w.shape[0]):
        out[i] = nag_lookahead_rule(w[i], v[i], gamma)


# --- one epoch --------------------------------------------------------------------------------------------------
@_jit
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
                loss = _loss_and_grad_one_hidden(xb, yb, W1, b1, W2, b2, gW1, gb1, gW2, gb2, A[:b], Z[:b], dA[:b],
                                                 act, task, small)
            else:
                loss = _loss_and_grad(xb, yb, point, g, sizes, woff, boff, work, delta, act, task, small)
            c1, c2 = (C[k, c0 + step, 0], C[k, c0 + step, 1]) if rule == 5 else (1.0, 1.0)
            _apply_rule(rule, g, w, v1, v2, h, c1, c2)
            loss_sum[k] += loss * b
            grad_sq[k] += _sum_of_squares(g)
            step += 1


@_jit
def evaluate(X, Y, labels, theta, sizes, woff, boff, act, task, small, loss_out, acc_out):
    """Every member's mean loss and (classification) accuracy on (X, Y): the validation pass (as nn.MLP.evaluate)."""
    n = X.shape[0]
    layers = sizes.shape[0] - 1
    c = sizes[layers]
    work = np.empty(n * (sizes[1:].sum()))
    for k in range(theta.shape[0]):
        logits = _forward(X, theta[k], sizes, woff, boff, work, act, small)
        z = work[logits:logits + n * c].reshape(n, c)
        loss = 0.0
        hits = 0
        for r in range(n):
            if task == 0:
                zmax, arg = z[r, 0], 0  # argmax as numpy's: the first largest, or the first NaN
                if zmax == zmax:
                    for j in range(1, c):
                        if z[r, j] != z[r, j]:
                            zmax, arg = z[r, j], j
                            break
                        if z[r, j] > zmax:
                            zmax, arg = z[r, j], j
                hits += arg == labels[r]
                se, zy, ys = 0.0, 0.0, 0.0
                for j in range(c):
                    zs = z[r, j] - zmax
                    zy += zs * Y[r, j]
                    ys += Y[r, j]
                    se += np.exp(zs)
                loss -= zy - np.log(se) * ys
            else:
                for j in range(c):
                    e = z[r, j] - Y[r, j]
                    loss += e * e
        acc_out[k] = hits / n
        loss_out[k] = loss / n if task == 0 else 0.5 * loss / (n * c)


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
        evaluate(*self._eval[2:], theta, self.sizes, self.woff, self.boff, self.act, self.task, self.small, loss, acc)
        return loss, (acc if self.task == 0 else None)
