"""Compiled epochs for the MLP: the fast path of ``study.core.train`` (numba).

One call of ``epoch`` trains K networks through one whole epoch: for each member and each batch it takes the
gradient at the optimizer's look-ahead point (forward, softmax cross-entropy or squared error, backward) and applies
the update rule, fused into one pass over the P parameters. Python calls it once per epoch and keeps the epoch-level
bookkeeping (history, callbacks, divergence, compaction) in ``study.core.train``, exactly as on the readable path.

What is compiled and what is not:
- the update rules are **not** rewritten here, nor is any optimizer named: every entry of ``optim.OPTIMIZERS``
  (its elementwise rule, the one ``Optimizer.update`` runs on numpy arrays, and the declared names of its state,
  hyperparameters and per-step terms) is compiled as it is into the per-parameter loop; the kernel picks the entry
  by its index in ``RULES``;
- the network is ``study.core.nn.MLP``'s mathematics, compiled in ``study.core.mlp_kernels`` (any number of layers;
  relu, tanh, sigmoid; softmax cross-entropy or 0.5 mean squared error), on its flat (K, P) layout;
- a rule's per-step terms (Adam's bias corrections 1 - beta^t) come from its ``step_terms``, computed in numpy for
  many steps ahead before the call (numba's pow and numpy's differ in the last bit);
- the sum of squared gradients (the grad_norm metric) is a separate pass, so that the update loop stays a plain
  elementwise loop that LLVM vectorises.

The readable path is the reference: tests/test_kernels.py runs both on every optimizer, batch mode, activation,
task and population size and requires the same parameters and metrics: bitwise for the rules; to 1e-12 for whole
runs, where the matrix products sum in another order (another BLAS call, or loops for single samples) and exp, log
and tanh are libm's instead of numpy's SIMD versions, so a gradient's last bits differ.
Every optimizer of the registry compiles, whatever its number of state arrays, hyperparameters and per-step terms:
the kernel's state is a tuple of exactly the optimizer's (K, P) arrays, so numba compiles ``epoch`` once per number
of state arrays (each specialisation holds only the rules of that count), and the loops that call a rule are
generated from its declaration (below). Measured against one specialisation with the state padded to the registry's
largest count (2026-12-06, ms of CPU per epoch, adam and momentum on digits and moons at batch 1, 32, full): 5-19%
faster in every case; the price is one compile per count (about 40 s instead of 27 s of CPU for all six optimizers
from an empty cache, once per machine: the cache keeps them).

Members never interact: member k's numbers are the same whether it trains alone or beside others.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
from numba import literal_unroll, types
from numba.core.errors import NumbaExperimentalFeatureWarning
from numba.extending import overload

from study.core import nn, optim
from study.core.jit import inline, jit, jit_sum
from study.core.mlp_kernels import evaluate as evaluate_members, loss_and_grad, loss_and_grad_one_hidden

# Batches of at most this many samples multiply with plain loops; larger ones call BLAS (np.dot), whose per-call
# overhead (about half a microsecond) pays off from two samples on: measured on digits 64-32-10 (momentum, ms per
# epoch, loops / BLAS): batch 1 2.45 / 2.83, batch 2 1.68 / 1.62, batch 4 1.33 / 0.97, batch 8 1.07 / 0.60.
SMALL = 1
TERMS_AHEAD = 1 << 16  # a rule's per-step terms are computed for about this many (member, step) pairs at once

ACTIVATIONS = {"relu": 0, "tanh": 1, "sigmoid": 2}
TASKS = {"classification": 0, "regression": 1}


# --- the rules, compiled from the registry ----------------------------------------------------------------------
# Every optimizer of the registry, by index: (index, its rule, its look-ahead or None), compiled from the very
# functions the readable path runs. The index opens each entry so that numba types the entries as plain tuples (a
# tuple that opens with a function it tries to unify into one function type, an experimental path).
RULES = {name: i for i, name in enumerate(optim.OPTIMIZERS)}
_COMPILED = tuple((RULES[name], inline(o.rule), inline(o.lookahead_rule) if o.lookahead_rule else None)
                  for name, o in optim.OPTIMIZERS.items())


def _declarations() -> dict:
    """What each compiled function reads, by function: its registry entry. Entries may share a function (momentum
    and nag share momentum_rule) only if they declare its arguments alike, since the loop that calls it is generated
    once per function from the counts of one declaration."""
    declared = {}
    for o in optim.OPTIMIZERS.values():
        for f in filter(None, (o.rule, o.lookahead_rule)):
            first = declared.setdefault(f, o)
            if (len(first.state), len(first.hyper), len(first.terms)) != (len(o.state), len(o.hyper), len(o.terms)):
                raise TypeError(f"{first.name} and {o.name} share {f.__name__} but declare its arguments differently")
    return declared


_DECLARED = _declarations()
HYPER_WIDTH = max(len(o.hyper) for o in optim.OPTIMIZERS.values())


# The loops that call a rule are generated as source text from the declaration's counts (state arrays,
# hyperparameters, terms) and compiled. A rule takes its state, hyperparameters and terms as separate numbers, and
# numba can neither build a tuple of a length known only from the registry nor star-unpack an array: without
# generation each count would need its own hand-written loop, and a declaration beyond those would not compile.
# Generated, each loop is the plain one a person would write for that rule (``_loop_source`` prints it): the numbers
# read into locals, one call per parameter, which LLVM vectorises. Only counts enter the text, never a string from
# the registry: nothing declared is executed. (The alternative, numba's internal to_fixed_tuple, is not public.)
def _tuple(items: list[str]) -> str:
    """Python's spelling of a tuple of these names, without parentheses: "a, b", "a," for one."""
    return ", ".join(items) + ("," if len(items) == 1 else "")


def _loop_source(kind: str, n_state: int, n_hyper: int, n_terms: int = 0) -> str:
    """The source of one generated loop: ``update`` (w += the rule's update, the member's state rows updated in
    place) or ``point`` (out = the look-ahead point)."""
    state, hyper, terms = ([f"{x}{j}" for j in range(n)] for x, n in (("s", n_state), ("h", n_hyper), ("c", n_terms)))
    head = [f"    {_tuple(state)} = rows"] if state else []  # the member's rows of the state arrays
    head += [f"    {_tuple(names)} = {_tuple([f'{array}[{j}]' for j in range(len(names))])}"
             for names, array in ((hyper, "h"), (terms, "c")) if names]  # its numbers as locals, read once
    state_i = [f"{x}[i]" for x in state]
    args = ", ".join(state_i + hyper + terms)
    if kind == "update":
        return "\n".join(["def update(rule, g, w, rows, h, c):", *head,
                          "    for i in range(g.shape[0]):",
                          f"        {_tuple(['u', *state_i])} = rule(g[i], {args})",
                          "        w[i] += u", ""])
    return "\n".join(["def point(look, w, rows, h, out):", *head,
                      "    for i in range(w.shape[0]):",
                      f"        out[i] = look(w[i], {args})", ""])


def _generated(source: str, name: str):
    namespace = {}
    exec(compile(source, f"<generated by study.core.kernels: {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


def _not_its_state(rule, g, w, rows, h, c):
    raise ValueError("these state arrays are not the rule's declared state")


def _not_its_look_ahead_state(look, w, rows, h, out):
    raise ValueError("these state arrays are not the look-ahead's declared state")


def _update_row(rule, g, w, rows, h, c):
    """w += rule(g, *state, *hyper, *terms)'s update element by element; the member's state rows (a tuple, as many
    as the rule declares, in order) updated in place; h, c the member's hyperparameters and this step's terms."""


@overload(_update_row, inline="always")
def _update_row_typed(rule, g, w, rows, h, c):
    declared = _DECLARED[rule.dispatcher.py_func]  # typing time: the registry says what the rule reads
    if len(rows) != len(declared.state):
        # the kernel is typed once per number of state arrays, and every rule of the registry is typed with it;
        # the rules of another count never run there (CompiledEpochs passes a rule its own state)
        return _not_its_state
    return _generated(_loop_source("update", len(declared.state), len(declared.hyper), len(declared.terms)),
                      "update")


def _look_ahead_row(look, w, rows, h, out):
    """out = look(w, *state, *hyper) element by element (the point where the gradient is taken)."""


@overload(_look_ahead_row, inline="always")
def _look_ahead_row_typed(look, w, rows, h, out):
    if isinstance(look, types.NoneType):
        return lambda look, w, rows, h, out: None  # the gradient is taken at the parameters: nothing to do
    declared = _DECLARED[look.dispatcher.py_func]
    if len(rows) != len(declared.state):
        return _not_its_look_ahead_state
    return _generated(_loop_source("point", len(declared.state), len(declared.hyper)), "point")


def _member_rows(state, k):
    """The tuple of member k's rows of the (K, P) state arrays."""


@overload(_member_rows, inline="always")
def _member_rows_typed(state, k):
    return _generated(f"def rows(state, k):\n    return ({_tuple([f'state[{j}][k]' for j in range(len(state))])})\n",
                      "rows")


@jit_sum
def _sum_of_squares(g):
    """sum(g * g), its terms added in any order (vectorised): a metric, not an update, so only the sum matters."""
    total = 0.0
    for i in range(g.shape[0]):
        total += g[i] * g[i]
    return total


# --- the update, fused over the P parameters of one member -----------------------------------------------------------
@contextlib.contextmanager
def _quiet_compile():
    """Compiling the rules' dispatch (literal_unroll over a tuple of different compiled functions) makes numba try,
    and fail, to unify them into one first-class function type, and warn that this feature is experimental. The
    unrolled loop does not use it (each rule is called directly), so the warning is silenced for that compile."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
        yield


@jit
def _apply_rule(rule, g, w, rows, h, c):
    """w += the update of optimizer number ``rule`` (RULES) for the gradient g; its state rows updated in place."""
    for entry in literal_unroll(_COMPILED):
        if entry[0] == rule:
            _update_row(entry[1], g, w, rows, h, c)


@jit
def _look_ahead(rule, w, rows, h, out):
    """out = the point where optimizer number ``rule`` takes its gradient (only called for those with a look-ahead)."""
    for entry in literal_unroll(_COMPILED):
        if entry[0] == rule:
            _look_ahead_row(entry[2], w, rows, h, out)


# --- one epoch --------------------------------------------------------------------------------------------------
@jit
def epoch(X, Y, order, batch, first, last, theta, state, H, C, c0, sizes, woff, boff, act, task, rule, looks_ahead,
          small, loss_sum, grad_sq):
    """Train every member (row of theta) through the updates first .. last - 1 of one epoch in place (0 and the
    epoch's number of updates: the whole epoch; a part of it ends at a checkpoint, and the next call goes on).

    X, Y       the training set; ``order`` the epoch's permutation of its rows (empty: their own order)
    batch      samples per update; the last batch of an epoch may be smaller
    first, last  the epoch's updates to make, 0-based (update s takes the samples s * batch ..)
    theta      (K, P) parameters; state a tuple of the optimizer's (K, P) state arrays, its declared state in
               order (numba compiles the kernel once per length of this tuple)
    H          (K, HYPER_WIDTH) hyperparameters, its declared ones first, in order
    C, c0      the rule's per-step terms (Adam's bias corrections): C[k, c0 + s] those of the epoch's step s for
               member k (C of shape (K, 0, .) for a rule without terms)
    sizes, woff, boff   the network: layer sizes, offsets of each layer's W and b inside a row of theta
    act, task, rule     codes of ACTIVATIONS, TASKS, RULES; looks_ahead: the rule has a look-ahead (NAG)
    small               see SMALL
    loss_sum, grad_sq   (K,) accumulate batch loss x batch size and the squared gradient norm per update
    """
    n = X.shape[0]
    K, P = theta.shape
    lo, hi = first * batch, min(last * batch, n)  # the samples of these updates
    if order.shape[0] == 0:
        Xe, Ye, base = X, Y, 0
    else:  # gather these updates' samples once: every batch is then a contiguous block
        Xe, Ye, base = np.empty((hi - lo, X.shape[1])), np.empty((hi - lo, Y.shape[1])), lo
        for r in range(lo, hi):
            Xe[r - lo] = X[order[r]]
            Ye[r - lo] = Y[order[r]]
    b_max = min(batch, n)
    width = 0
    for layer in range(1, sizes.shape[0]):
        width = max(width, sizes[layer])
    work = np.empty(b_max * (sizes[1:].sum()))
    delta = np.empty(2 * b_max * width)
    g = np.empty(P)
    look = np.empty(P)
    no_terms = np.empty(0)
    one_hidden = sizes.shape[0] == 3
    d, m, c = sizes[0], sizes[1], sizes[-1]
    m = m if one_hidden else 0  # (views of the one-hidden-layer path: empty when it is not taken)
    A, dA, Z = work[:b_max * m].reshape(b_max, m), delta[:b_max * m].reshape(b_max, m), np.empty((b_max, c))
    gW1, gb1 = g[woff[0]:woff[0] + d * m].reshape(d, m), g[boff[0]:boff[0] + m]
    gW2, gb2 = g[woff[-1]:woff[-1] + m * c].reshape(m, c), g[boff[-1]:boff[-1] + c]
    for k in range(K):
        w, h, rows = theta[k], H[k], _member_rows(state, k)
        point = look if looks_ahead else w  # NAG takes its gradient at the look-ahead point
        W1, b1 = point[woff[0]:woff[0] + d * m].reshape(d, m), point[boff[0]:boff[0] + m]
        W2, b2 = point[woff[-1]:woff[-1] + m * c].reshape(m, c), point[boff[-1]:boff[-1] + c]
        step = first
        for start in range(lo, hi, batch):
            b = min(batch, n - start)
            xb, yb = Xe[start - base:start - base + b], Ye[start - base:start - base + b]
            if looks_ahead:  # NAG: the gradient at w - gamma v
                _look_ahead(rule, w, rows, h, look)
            if one_hidden:
                loss = loss_and_grad_one_hidden(xb, yb, W1, b1, W2, b2, gW1, gb1, gW2, gb2, A[:b], Z[:b], dA[:b],
                                                 act, task, small)
            else:
                loss = loss_and_grad(xb, yb, point, g, sizes, woff, boff, work, delta, act, task, small)
            _apply_rule(rule, g, w, rows, h, C[k, c0 + step] if C.shape[1] else no_terms)
            loss_sum[k] += loss * b
            grad_sq[k] += _sum_of_squares(g)
            step += 1


# --- the driver ----------------------------------------------------------------------------------------------------
def supports(net, optimizer: str) -> bool:
    """The compiled path trains exactly nn.MLP (a subclass or a wrapper may change its mathematics) with an optimizer
    of the registry (RULES: every one, whatever its number of state arrays, hyperparameters and terms)."""
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


_TYPED_FOR = set()  # the numbers of state arrays ``epoch`` has been compiled (or loaded) for in this process


def _c(a, dtype=float):
    return np.ascontiguousarray(a, dtype=dtype)


class CompiledEpochs:
    """Everything one training call needs, prepared once: the network's layout, the data as contiguous arrays."""

    def __init__(self, net: nn.MLP, optimizer: str, X, Y, batch: int, epochs: int, small: int = SMALL):
        self.optimizer, self.rule, self.opt = optimizer, RULES[optimizer], optim.OPTIMIZERS[optimizer]
        self.act, self.task, self.small, self.batch = ACTIVATIONS[net.activation], TASKS[net.task], small, batch
        blocks = {name: start for name, start, _, _ in nn._blocks(net.layout)}
        self.sizes = np.asarray(net.sizes, np.int64)
        self.woff = np.array([blocks[f"W{i}"] for i in range(1, net.n_layers + 1)], np.int64)
        self.boff = np.array([blocks[f"b{i}"] for i in range(1, net.n_layers + 1)], np.int64)
        self.X, self.Y = _c(X), _c(Y)
        self.steps = -(-self.X.shape[0] // batch)
        self.total_steps = epochs * self.steps
        self._no_order = np.empty(0, np.int64)
        self._eval = self._hyper = self._terms = None  # prepared once, reused while they fit

    one_blas_thread = staticmethod(one_blas_thread)

    def state_arrays(self, state) -> tuple:
        """The state's (K, P) arrays the rule updates in place, in the declared order."""
        return tuple(getattr(state, name)["theta"] for name in self.opt.state)

    def hyper_matrix(self, hyper: dict, k: int) -> np.ndarray:
        """(K, HYPER_WIDTH): column j holds the optimizer's j-th declared hyperparameter of every member."""
        if self._hyper is None or self._hyper[0] is not hyper:  # the same dict until members stop
            H = np.zeros((k, HYPER_WIDTH))
            for column, name in enumerate(self.opt.hyper):
                H[:, column] = hyper[name]
            self._hyper = (hyper, H)
        return self._hyper[1]

    def step_terms(self, count: int, hyper: dict, k: int) -> tuple[np.ndarray, int]:
        """The rule's per-step terms (Adam's 1 - beta^t) per member for steps t = count + 1 ..., as (C, c0):
        C[k, c0 + s, j] is term j of step s of this epoch. Worked out for several epochs at once (numpy's per-call
        cost would rival a small epoch's)."""
        if not self.opt.terms:
            return np.empty((k, 0, 0)), 0
        cached = self._terms
        if cached is None or cached[0] is not hyper or not cached[1] <= count <= cached[2] - self.steps:
            ahead = min(max(self.steps, TERMS_AHEAD // k // self.steps * self.steps), self.total_steps - count)
            t = np.arange(count + 1, count + ahead + 1, dtype=float)[None, :]
            terms = self.opt.step_terms(t, {name: np.asarray(hyper[name])[:, None] for name in self.opt.hyper})
            cached = self._terms = (hyper, count, count + ahead, np.ascontiguousarray(np.stack(terms, 2)))
        return cached[3], count - cached[1]

    def epoch(self, theta, state, hyper: dict, order, stops=(), between=None):
        """One epoch in place on theta and the state's arrays; returns (state, loss_sum, grad_sq) per member.
        ``stops``: update counts inside the epoch (increasing, 0 < s < its updates) after which ``between(s)`` is
        called (a checkpoint scores the parameters there); the epoch runs in one call of the kernel without them."""
        k = theta.shape[0]
        loss_sum, grad_sq = np.zeros(k), np.zeros(k)
        C, c0 = self.step_terms(state.count, hyper, k)
        order = self._no_order if order is None else order
        rest = (theta, self.state_arrays(state), self.hyper_matrix(hyper, k), C, c0, self.sizes, self.woff, self.boff,
                self.act, self.task, self.rule, self.opt.lookahead_rule is not None, self.small, loss_sum, grad_sq)
        first = 0
        for last in (*stops, self.steps):
            args = (self.X, self.Y, order, self.batch, first, last, *rest)
            if len(self.opt.state) in _TYPED_FOR:
                epoch(*args)
            else:  # the first call per number of state arrays compiles (or loads the cache): see _quiet_compile
                with _quiet_compile():
                    epoch(*args)
                _TYPED_FOR.add(len(self.opt.state))
            if last < self.steps and between is not None:
                between(last)
            first = last
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
