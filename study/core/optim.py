"""The lecture's six update rules as pure functions.

Each optimizer is a pair ``init(params) -> state`` and ``update(grads, state, hyper) -> (updates, state)``
over a dict of numpy arrays (the shape of optax's ``GradientTransformation``), plus ``lookahead``: the point at
which the gradient of the next step is taken (the parameters themselves, except for NAG). One step is

    point = opt.lookahead(params, state, hyper)
    updates, state = opt.update(grad(point), state, hyper)
    params = apply_updates(params, updates)

Population axis: every array may carry a leading axis K (K networks); a hyperparameter is a scalar or an array of
shape (K,), broadcast against that axis, so K networks with K hyperparameter sets update in one call and member k
equals the same network updated alone. Every operation is elementwise, so the rules also apply unchanged to one
flat parameter buffer of shape (K, P).

Sources (the lecture's equations; the papers behind them):
  gd        w <- w - eta g
  momentum  v_t = gamma v_{t-1} + eta g_t;  w <- w - v_t                          (Polyak 1964; Rumelhart et al. 1986)
  nag       w_look = w - gamma v_{t-1};  g = grad(w_look);
            v_t = gamma v_{t-1} + eta g;  w <- w - v_t                           (Nesterov 1983; Sutskever et al. 2013)
  adagrad   v_t = v_{t-1} + g^2;  w <- w - eta / (sqrt(v_t) + eps) g              (Duchi et al. 2011)
  rmsprop   v_t = beta v_{t-1} + (1 - beta) g^2;  w <- w - eta / (sqrt(v_t) + eps) g   (Tieleman & Hinton 2012)
  adam      m_t = beta1 m_{t-1} + (1 - beta1) g;  v_t = beta2 v_{t-1} + (1 - beta2) g^2;
            m^ = m_t / (1 - beta1^t);  v^ = v_t / (1 - beta2^t);  w <- w - eta / (sqrt(v^) + eps) m^
                                                                                 (Kingma & Ba 2015)

The lecture's Adam slide writes ``beta1 * v_{t-1}`` in the first-moment line; ``m_{t-1}`` is meant (DESIGN §4).
eps sits outside the square root, as on the slides.

One source of truth: each rule is written once, below, as an elementwise function of one parameter's gradient,
state and hyperparameters (``momentum_rule(g, v, eta, gamma) -> (update, v)``). numpy runs it on whole arrays (the
``*_update`` functions: the readable path); ``study.core.kernels`` compiles the very same function with numba into its
fused epoch loop (the fast path). Only +, -, *, / and sqrt appear in the rules, all correctly rounded in IEEE
arithmetic, so both evaluate every element to the same bits (tests/test_kernels.py checks it). Adam's 1 - beta^t
is computed once per step outside the rule (``adam_corrections``): pow is not correctly rounded and numpy's and
numba's differ in the last bit.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

Params = dict[str, np.ndarray]
Hyper = dict[str, float | np.ndarray]


def _per_member(h, x: np.ndarray):
    """Broadcast a hyperparameter (scalar or shape (K,)) against an array whose leading axis is K."""
    h = np.asarray(h, dtype=float)
    return h if h.ndim == 0 else h.reshape(h.shape + (1,) * (x.ndim - 1))


def _zeros_like(params: Params) -> Params:
    return {k: np.zeros_like(p) for k, p in params.items()}


def apply_updates(params: Params, updates: Params) -> Params:
    return {k: params[k] + updates[k] for k in params}


def _no_lookahead(params, state, hyper):
    return params


# --- The rules, elementwise: g the gradient, v / m the state, the rest hyperparameters --------------------------
# Each works on numbers and on numpy arrays alike (the same expression, evaluated per element).
def gd_rule(g, eta):
    return -eta * g


def momentum_rule(g, v, eta, gamma):
    v = gamma * v + eta * g  # the exponentially decaying sum of past (eta-scaled) gradients
    return -v, v


def nag_lookahead_rule(w, v, gamma):
    """w_look = w - gamma v_{t-1}: where the history alone would carry us; NAG's gradient is taken there."""
    return w - gamma * v


def adagrad_rule(g, v, eta, eps):
    v = v + g * g  # every squared gradient so far: frequent features get ever smaller steps
    return -eta / (np.sqrt(v) + eps) * g, v


def rmsprop_rule(g, v, eta, beta, eps):
    v = beta * v + (1.0 - beta) * g * g  # AdaGrad's sum made a decaying average: the step no longer dies out
    return -eta / (np.sqrt(v) + eps) * g, v


def adam_rule(g, m, v, eta, beta1, beta2, eps, correction1, correction2):
    """correction1, correction2 = adam_corrections(t, beta1, beta2) of this step t."""
    m = beta1 * m + (1.0 - beta1) * g  # first moment: momentum's average of gradients
    v = beta2 * v + (1.0 - beta2) * g * g  # second moment: RMSProp's average of squared gradients
    m_hat = m / correction1  # bias correction: m and v start at 0
    v_hat = v / correction2
    return -eta / (np.sqrt(v_hat) + eps) * m_hat, m, v


def adam_corrections(t, beta1, beta2):
    """Adam's bias corrections 1 - beta1^t and 1 - beta2^t at step t (t, beta1, beta2: numbers or arrays).

    numpy chooses its pow by the operands' layout (an exact square for a lone exponent 2, a vectorised pow for
    arrays), so both operands are first made full arrays of one shape (at least 1-D): then the corrections of one
    step here and of a whole epoch of steps in ``study.core.kernels`` are the same bits.
    """
    shape = np.broadcast_shapes(np.shape(t), np.shape(beta1), np.shape(beta2)) or (1,)
    t = np.full(shape, t, dtype=float)
    power1, power2 = np.power(np.full(shape, beta1, dtype=float), t), np.power(np.full(shape, beta2, dtype=float), t)
    return 1.0 - power1, 1.0 - power2


# --- GD ---------------------------------------------------------------------------------------------------------
class GDState(NamedTuple):
    count: int


def gd_init(params: Params) -> GDState:
    return GDState(count=0)


def gd_update(grads: Params, state: GDState, hyper: Hyper):
    updates = {k: gd_rule(g, _per_member(hyper["eta"], g)) for k, g in grads.items()}
    return updates, GDState(state.count + 1)


# --- Momentum and NAG: the same history v, NAG takes its gradient at the look-ahead point ---------------------
class MomentumState(NamedTuple):
    count: int
    v: Params  # the exponentially decaying sum of past (eta-scaled) gradients


def momentum_init(params: Params) -> MomentumState:
    return MomentumState(count=0, v=_zeros_like(params))


def momentum_update(grads: Params, state: MomentumState, hyper: Hyper):
    updates, v = {}, {}
    for k, g in grads.items():
        updates[k], v[k] = momentum_rule(g, state.v[k], _per_member(hyper["eta"], g), _per_member(hyper["gamma"], g))
    return updates, MomentumState(state.count + 1, v)


def nag_lookahead(params: Params, state: MomentumState, hyper: Hyper) -> Params:
    """w_look = w - gamma v_{t-1}: where the history alone would carry us; NAG's gradient is taken there."""
    return {k: nag_lookahead_rule(p, state.v[k], _per_member(hyper["gamma"], p)) for k, p in params.items()}


# NAG's history and update are momentum's; only the point where the gradient is taken differs:
# w_{t+1} = w_look - eta g(w_look) = w_t - (gamma v_{t-1} + eta g(w_look)) = w_t - v_t.
nag_init, nag_update = momentum_init, momentum_update


# --- AdaGrad and RMSProp: a per-parameter learning rate from the history of squared gradients -----------------
class ScaleState(NamedTuple):
    count: int
    v: Params  # accumulated (AdaGrad) or exponentially averaged (RMSProp) squared gradients


def scale_init(params: Params) -> ScaleState:
    return ScaleState(count=0, v=_zeros_like(params))


def adagrad_update(grads: Params, state: ScaleState, hyper: Hyper):
    updates, v = {}, {}
    for k, g in grads.items():
        updates[k], v[k] = adagrad_rule(g, state.v[k], _per_member(hyper["eta"], g), _per_member(hyper["eps"], g))
    return updates, ScaleState(state.count + 1, v)


def rmsprop_update(grads: Params, state: ScaleState, hyper: Hyper):
    updates, v = {}, {}
    for k, g in grads.items():
        eta, beta, eps = (_per_member(hyper[name], g) for name in ("eta", "beta", "eps"))
        updates[k], v[k] = rmsprop_rule(g, state.v[k], eta, beta, eps)
    return updates, ScaleState(state.count + 1, v)


# --- Adam ------------------------------------------------------------------------------------------------------
class AdamState(NamedTuple):
    count: int
    m: Params  # first moment: momentum's average of gradients
    v: Params  # second moment: RMSProp's average of squared gradients


def adam_init(params: Params) -> AdamState:
    return AdamState(count=0, m=_zeros_like(params), v=_zeros_like(params))


def adam_update(grads: Params, state: AdamState, hyper: Hyper):
    t = state.count + 1
    m, v, updates = {}, {}, {}
    for k, g in grads.items():
        eta, beta1, beta2, eps = (_per_member(hyper[name], g) for name in ("eta", "beta1", "beta2", "eps"))
        correction1, correction2 = adam_corrections(t, beta1, beta2)
        updates[k], m[k], v[k] = adam_rule(g, state.m[k], state.v[k], eta, beta1, beta2, eps, correction1, correction2)
    return updates, AdamState(t, m, v)


# --- The registry ----------------------------------------------------------------------------------------------
class Optimizer(NamedTuple):
    name: str
    init: Callable[[Params], NamedTuple]
    update: Callable[[Params, NamedTuple, Hyper], tuple[Params, NamedTuple]]
    lookahead: Callable[[Params, NamedTuple, Hyper], Params]
    defaults: dict[str, float]  # the usual defaults, under the lecture's names


OPTIMIZERS: dict[str, Optimizer] = {
    "gd": Optimizer("gd", gd_init, gd_update, _no_lookahead, {"eta": 0.01}),
    "momentum": Optimizer("momentum", momentum_init, momentum_update, _no_lookahead, {"eta": 0.01, "gamma": 0.9}),
    "nag": Optimizer("nag", nag_init, nag_update, nag_lookahead, {"eta": 0.01, "gamma": 0.9}),
    "adagrad": Optimizer("adagrad", scale_init, adagrad_update, _no_lookahead, {"eta": 0.01, "eps": 1e-8}),
    "rmsprop": Optimizer("rmsprop", scale_init, rmsprop_update, _no_lookahead,
                         {"eta": 0.001, "beta": 0.9, "eps": 1e-8}),
    "adam": Optimizer("adam", adam_init, adam_update, _no_lookahead,
                      {"eta": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
}


def hyperparameters(name: str, **overrides) -> Hyper:
    """The optimizer's defaults with ``overrides`` applied; an unknown name is an error, not silently ignored."""
    opt = OPTIMIZERS[name]
    unknown = set(overrides) - set(opt.defaults)
    if unknown:
        raise KeyError(f"{name} has no hyperparameter {sorted(unknown)}; it takes {sorted(opt.defaults)}")
    return {**opt.defaults, **overrides}


def step(opt: Optimizer, params: Params, state, hyper: Hyper, grad_fn: Callable[[Params], Params]):
    """One update: the gradient at the optimizer's look-ahead point, then the rule."""
    grads = grad_fn(opt.lookahead(params, state, hyper))
    updates, state = opt.update(grads, state, hyper)
    return apply_updates(params, updates), state


def select_members(state, keep: np.ndarray):
    """The state of the population members ``keep`` (a boolean mask or index array over axis K)."""
    fields = [{k: a[keep] for k, a in f.items()} if isinstance(f, dict) else f for f in state]
    return type(state)(*fields)
