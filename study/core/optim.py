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
state and hyperparameters (``momentum_rule(g, v, eta, gamma) -> (update, v)``), and each optimizer is declared once
in ``OPTIMIZERS``, whole: its rule, the names of its state and per-step terms, its hyperparameters (meaning, valid
range, default, whether it is an averaging constant searched as 1 - x, a fallback search range: ``hyperparams``),
and its label, colour and family (adaptive or not) for the report and the lecture. numpy runs the rule on
whole arrays (``Optimizer.update``: the readable path); ``study.core.kernels`` compiles the very same function with
numba into its fused epoch loop (the fast path), reading the same declaration. Adding an optimizer is its rule, its
entry here and its search space (conf/search_spaces.yaml, where the entry's ranges are the fallback); it then trains
compiled, whatever its number of state arrays. Only +, -, *, / and sqrt appear
in the rules, all correctly rounded in IEEE arithmetic, so both evaluate every element to the same bits
(tests/test_kernels.py checks it). Adam's 1 - beta^t is computed once per step outside the rule (its per-step terms,
``adam_step_terms``): pow is not correctly rounded and numpy's and numba's differ in the last bit.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from study.core import hyperparams as hp
from study.core.hyperparams import Hyperparameter, SearchRange

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


# --- The rules, elementwise: g the gradient, then the state, the hyperparameters and any per-step terms ---------
# Each works on numbers and on numpy arrays alike (the same expression, evaluated per element) and returns
# (update, *new state): the registry below declares the names of those arguments, in this order.
def gd_rule(g, eta):
    return (-eta * g,)


def momentum_rule(g, v, eta, gamma):
    v = gamma * v + eta * g  # the exponentially decaying sum of past (eta-scaled) gradients
    return -v, v


def nag_lookahead_rule(w, v, eta, gamma):
    """w_look = w - gamma v_{t-1}: where the history alone would carry us; NAG's gradient is taken there.

    A choice: this is Nesterov's method in the look-ahead form the lecture writes (Sutskever et al. 2013), the
    gradient taken at a point that is not the parameters. The equivalent reparametrised form (Bengio et al. 2013;
    PyTorch's nesterov=True) keeps the gradient at the parameters and changes the update instead; both give the same
    trajectory of look-ahead points, but the parameters they report differ by gamma v.
    """
    return w - gamma * v


def adagrad_rule(g, v, eta, eps):
    v = v + g * g  # every squared gradient so far: frequent features get ever smaller steps
    return -eta / (np.sqrt(v) + eps) * g, v


def rmsprop_rule(g, v, eta, beta, eps):
    v = beta * v + (1.0 - beta) * g * g  # AdaGrad's sum made a decaying average: the step no longer dies out
    return -eta / (np.sqrt(v) + eps) * g, v


def adam_rule(g, m, v, eta, beta1, beta2, eps, correction1, correction2):
    """correction1, correction2 = adam_corrections(t, beta1, beta2) of this step t (the rule's per-step terms)."""
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


def adam_step_terms(t, hyper: Hyper):
    """The per-step terms of Adam's rule: its bias corrections at step t (pow stays out of the rule: numpy's and
    numba's differ in the last bit)."""
    return adam_corrections(t, hyper["beta1"], hyper["beta2"])


# --- The registry: each optimizer declared once --------------------------------------------------------------------
_STATE_TYPES: dict[tuple[str, ...], type] = {}


def state_type(fields: tuple[str, ...]) -> type:
    """The NamedTuple of an optimizer's state: the step count and one dict of arrays per state name."""
    if fields not in _STATE_TYPES:
        _STATE_TYPES[fields] = NamedTuple("State", [("count", int), *((f, Params) for f in fields)])
    return _STATE_TYPES[fields]


@dataclass(frozen=True)
class Optimizer:
    """An optimizer, whole: its elementwise rule and the names of what the rule reads, and how people see it. The
    numpy path below and the compiled kernels (``study.core.kernels``) are both built from these fields, the tuning,
    the report and the lecture read the rest; nothing else names an optimizer.

    name        the registry key (the MLflow tag, the conf block)
    label       the display name (the lecture's: "Momentum GD")
    color       its colour in every figure (matplotlib's hex)
    adaptive    the family: a per-parameter step from the gradients' history (AdaGrad, RMSProp, Adam), or not
    rule        rule(g, *state, *hyper, *terms) -> (update, *new state), elementwise
    state       its state arrays (zeros at the start), in the rule's argument order; any number of them
    hyperparameters  one ``hyperparams.Hyperparameter`` each, in the rule's argument order
    lookahead_rule   lookahead(w, *state, *hyper) -> the point where the gradient is taken (None: the parameters)
    terms       numbers the rule takes per step after its hyperparameters, by name (Adam's bias corrections)
    step_terms  step_terms(t, hyper) -> those terms at step t = 1, 2, ... (t and hyper broadcast together)
    """
    name: str
    label: str
    color: str
    adaptive: bool
    rule: Callable
    state: tuple[str, ...]
    hyperparameters: tuple[Hyperparameter, ...]
    lookahead_rule: Callable | None = None
    terms: tuple[str, ...] = ()
    step_terms: Callable | None = None

    def __post_init__(self):
        """A declaration the rule cannot be called with is an error here, at import, not deep inside a compile."""
        arguments = len(inspect.signature(self.rule).parameters)
        wanted = 1 + len(self.state) + len(self.hyper) + len(self.terms)
        if arguments != wanted:
            raise TypeError(f"{self.name}: {self.rule.__name__} takes {arguments} arguments; the declaration gives "
                            f"{wanted} (g, state {self.state}, hyperparameters {self.hyper}, terms {self.terms})")
        if len(set(self.hyper)) != len(self.hyper) or bool(self.terms) != (self.step_terms is not None):
            raise TypeError(f"{self.name}: hyperparameter names repeat, or terms come without step_terms")

    @property
    def hyper(self) -> tuple[str, ...]:
        """The hyperparameters' names, in the rule's argument order."""
        return tuple(h.name for h in self.hyperparameters)

    @property
    def defaults(self) -> dict[str, float]:
        """The untuned values under the lecture's names (a new dict: changing it changes no registry entry)."""
        return {h.name: h.default for h in self.hyperparameters}

    @property
    def averaging(self) -> tuple[str, ...]:
        """The averaging constants (searched as 1 - x by default): momentum's gamma, Adam's beta1 and beta2."""
        return tuple(h.name for h in self.hyperparameters if h.averaging)

    def hyperparameter(self, name: str) -> Hyperparameter:
        for h in self.hyperparameters:
            if h.name == name:
                return h
        raise KeyError(f"{self.name} has no hyperparameter {name!r}; it takes {', '.join(self.hyper)}")

    def search_space(self) -> dict[str, SearchRange]:
        """The fallback search space: each hyperparameter's registry range (conf/search_spaces.yaml wins)."""
        return {h.name: h.search for h in self.hyperparameters}

    def init(self, params: Params):
        return state_type(self.state)(0, *(_zeros_like(params) for _ in self.state))

    def update(self, grads: Params, state, hyper: Hyper):
        """The rule applied to every array of ``grads``: (updates, the new state)."""
        t = state.count + 1
        names = self.hyper
        updates, new = {}, {name: {} for name in self.state}
        for key, g in grads.items():
            h = {name: _per_member(hyper[name], g) for name in names}
            terms = self.step_terms(t, h) if self.step_terms else ()
            update, *after = self.rule(g, *(getattr(state, s)[key] for s in self.state), *h.values(), *terms)
            updates[key] = update
            for name, value in zip(self.state, after):
                new[name][key] = value
        return updates, state._replace(count=t, **new)

    def lookahead(self, params: Params, state, hyper: Hyper) -> Params:
        if self.lookahead_rule is None:
            return params
        names = self.hyper
        return {k: self.lookahead_rule(p, *(getattr(state, s)[k] for s in self.state),
                                       *(_per_member(hyper[name], p) for name in names))
                for k, p in params.items()}


# The defaults are the values practitioners start from, the untuned (default) track of the sweep and the one place
# they are written: PyTorch / Keras defaults, Kingma & Ba 2015 for Adam, Hinton's Coursera lecture 6e for RMSProp.
# The fallback search ranges are conf/search_spaces.yaml's (whose comments give their sources); x = 1 - value for
# the averaging constants. Colours: matplotlib's tab10 (the report's palette, one colour per optimizer everywhere).
_GAMMA = "momentum: the share of the previous step carried into the next one"
_NAG_GAMMA = _GAMMA + " (and how far ahead the gradient is taken)"
_EPS = hp.epsilon(1e-8)
OPTIMIZERS: dict[str, Optimizer] = {o.name: o for o in (
    Optimizer("gd", "GD", "#7f7f7f", False, gd_rule, (), (hp.learning_rate(0.01, 1e-4, 10.0),)),
    Optimizer("momentum", "Momentum GD", "#1f77b4", False, momentum_rule, ("v",),
              (hp.learning_rate(0.01, 1e-6, 10.0), hp.averaging("gamma", "γ", _GAMMA, 0.9, 1e-4))),
    # NAG's history and update are momentum's; only the point where the gradient is taken differs:
    # w_{t+1} = w_look - eta g(w_look) = w_t - (gamma v_{t-1} + eta g(w_look)) = w_t - v_t.
    Optimizer("nag", "NAG", "#17becf", False, momentum_rule, ("v",),
              (hp.learning_rate(0.01, 1e-6, 10.0), hp.averaging("gamma", "γ", _NAG_GAMMA, 0.9, 1e-4)),
              lookahead_rule=nag_lookahead_rule),
    Optimizer("adagrad", "AdaGrad", "#2ca02c", True, adagrad_rule, ("v",),
              (hp.learning_rate(0.01, 1e-4, 10.0), _EPS)),
    Optimizer("rmsprop", "RMSProp", "#ff7f0e", True, rmsprop_rule, ("v",),
              (hp.learning_rate(0.001, 1e-5, 1.0),
               hp.averaging("beta", "β", "the decay of the running average of squared gradients", 0.9, 1e-5, 0.5),
               _EPS)),
    Optimizer("adam", "Adam", "#d62728", True, adam_rule, ("m", "v"),
              (hp.learning_rate(0.001, 1e-5, 3.0),
               hp.averaging("beta1", "β1", "the decay of the first moment, the running average of gradients",
                            0.9, 1e-5),
               hp.averaging("beta2", "β2", "the decay of the second moment, the running average of squared "
                                           "gradients", 0.999, 1e-6),
               _EPS),
              terms=("correction1", "correction2"), step_terms=adam_step_terms),
)}


def adaptive() -> tuple[str, ...]:
    """The adaptive family's names, in registry order (the lecture's "AdaGrad, RMSProp, Adam")."""
    return tuple(name for name, o in OPTIMIZERS.items() if o.adaptive)


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
