"""The six update rules against hand-derived steps and an independent reference written from the lecture's equations.

No expected number comes from ``study.core.optim`` itself: they are worked out by hand (first steps), written in closed
form (momentum under a constant gradient), or produced by the plain-float reference below, which follows the
lecture's equations line by line (with the slips of its code listed in DESIGN §4 corrected). Only the population
tests compare study with study, because that is their property: K members in one call = K runs alone.
Tests that loop over ``OPTIMIZERS`` pick up a new optimizer without an edit.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from study.core import optim
from study.core.data import Split, load
from study.core.nn import SigmoidNeuron
from study.core.train import train

ALL = sorted(optim.OPTIMIZERS)


def _params(*values):
    return {"w": np.array([list(values)], dtype=float)}  # one member (K = 1), len(values) parameters


def _feed(name, grads, hyper, params=None):
    """Feed the given gradients (a list of arrays) one by one; return the params, states and updates per step."""
    opt = optim.OPTIMIZERS[name]
    params = params or _params(*np.zeros(np.shape(grads[0])[-1]))
    state = opt.init(params)
    trace = []
    for g in grads:
        updates, state = opt.update({"w": np.asarray(g, float).reshape(1, -1)}, state, hyper)
        params = optim.apply_updates(params, updates)
        trace.append((params, state, updates))
    return trace


# --- 1. First steps, derived by hand -------------------------------------------------------------------------------
def test_gd_moves_against_the_gradient_by_eta():
    (params, _, updates), = _feed("gd", [[2.0, -0.5, 0.0]], {"eta": 0.1}, _params(1.0, 1.0, 1.0))
    np.testing.assert_allclose(updates["w"], [[-0.2, 0.05, 0.0]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(params["w"], [[0.8, 1.05, 1.0]], rtol=0, atol=1e-15)


def test_momentum_under_a_constant_gradient_is_a_geometric_series():
    eta, gamma, g = 0.1, 0.9, 2.0
    trace = _feed("momentum", [[g]] * 30, {"eta": eta, "gamma": gamma}, _params(0.0))
    for t, (params, state, _) in enumerate(trace, start=1):
        v_t = eta * g * (1 - gamma**t) / (1 - gamma)  # v_t = sum_{s<t} gamma^s eta g
        w_t = -eta * g * (t - gamma * (1 - gamma**t) / (1 - gamma)) / (1 - gamma)  # -(v_1 + ... + v_t)
        assert state.v["w"][0, 0] == pytest.approx(v_t, rel=1e-12)
        assert params["w"][0, 0] == pytest.approx(w_t, rel=1e-12)
    # the history saturates at eta g / (1 - gamma): ten times the plain step for gamma = 0.9
    assert trace[-1][1].v["w"][0, 0] == pytest.approx(eta * g / (1 - gamma), rel=0.05)
    # a constant gradient is the same wherever it is taken, so NAG follows the same series
    _, ws = _run_1d("nag", {"eta": eta, "gamma": gamma}, 0.0, lambda w: np.full_like(w, g), 30)
    np.testing.assert_allclose(ws, [p["w"][0, 0] for p, _, _ in trace], rtol=1e-12)


def _run_1d(name, hyper, w0, grad, steps):
    """Run the optimizer with optim.step on a 1-D problem; return the points where gradients were taken and the w's."""
    opt = optim.OPTIMIZERS[name]
    points, ws = [], []

    def grad_fn(p):
        points.append(float(p["w"][0, 0]))
        return {"w": grad(p["w"])}

    params, state = _params(w0), opt.init(_params(w0))
    for _ in range(steps):
        params, state = optim.step(opt, params, state, hyper, grad_fn)
        ws.append(float(params["w"][0, 0]))
    return points, ws


def test_nag_takes_its_gradient_at_the_look_ahead_point():
    # f(w) = w^2 / 2, gradient w; w0 = 1, eta = 0.1, gamma = 0.9. By hand:
    #   t=1: v0 = 0, look = 1, g = 1, v1 = 0.1, w1 = 0.9
    #   t=2: look = 0.9 - 0.9*0.1 = 0.81, g = 0.81, v2 = 0.09 + 0.081 = 0.171, w2 = 0.9 - 0.171 = 0.729
    #   t=3: look = 0.729 - 0.9*0.171 = 0.5751, v3 = 0.1539 + 0.05751 = 0.21141, w3 = 0.729 - 0.21141 = 0.51759
    points, ws = _run_1d("nag", {"eta": 0.1, "gamma": 0.9}, 1.0, lambda w: w, 3)
    np.testing.assert_allclose(points, [1.0, 0.81, 0.5751], rtol=1e-13)
    np.testing.assert_allclose(ws, [0.9, 0.729, 0.51759], rtol=1e-13)
    # momentum on the same problem takes its gradient at w itself: w2 = 0.9 - (0.09 + 0.09) = 0.72
    points, ws = _run_1d("momentum", {"eta": 0.1, "gamma": 0.9}, 1.0, lambda w: w, 2)
    np.testing.assert_allclose(points, [1.0, 0.9], rtol=1e-13)
    np.testing.assert_allclose(ws, [0.9, 0.72], rtol=1e-13)


def test_nag_lookahead_is_w_minus_gamma_v():
    opt = optim.OPTIMIZERS["nag"]
    state = optim.OPTIMIZERS["nag"].init(_params(1.0, 1.0))._replace(count=3, v={"w": np.array([[0.5, -2.0]])})
    look = opt.lookahead(_params(1.0, 1.0), state, {"eta": 0.1, "gamma": 0.8})
    np.testing.assert_allclose(look["w"], [[1.0 - 0.4, 1.0 + 1.6]], rtol=0, atol=1e-15)
    for name in ALL:  # every other rule takes its gradient at the parameters themselves
        if name != "nag":
            o = optim.OPTIMIZERS[name]
            p = _params(1.0, 2.0)
            np.testing.assert_array_equal(o.lookahead(p, o.init(p), optim.hyperparameters(name))["w"], p["w"])


def test_adagrad_accumulates_squared_gradients():
    eta, eps = 0.5, 1e-8
    trace = _feed("adagrad", [[3.0, 0.0], [4.0, 1.0], [-12.0, 0.0]], {"eta": eta, "eps": eps})
    expected_v = [[9.0, 0.0], [25.0, 1.0], [169.0, 1.0]]  # 9, 9+16, 9+16+144
    expected_step = [[-eta * 3 / (3 + eps), 0.0], [-eta * 4 / (5 + eps), -eta / (1 + eps)],
                     [eta * 12 / (13 + eps), 0.0]]
    for (_, state, updates), v, s in zip(trace, expected_v, expected_step):
        np.testing.assert_allclose(state.v["w"], [v], rtol=1e-15)
        np.testing.assert_allclose(updates["w"], [s], rtol=1e-14, atol=1e-300)


def test_rmsprop_keeps_an_exponential_average_of_squared_gradients():
    eta, beta, eps = 0.01, 0.9, 1e-8
    trace = _feed("rmsprop", [[2.0], [1.0], [-3.0]], {"eta": eta, "beta": beta, "eps": eps})
    v1 = 0.1 * 4.0  # beta * 0 + (1 - beta) g^2
    v2 = 0.9 * v1 + 0.1 * 1.0  # 0.46
    v3 = 0.9 * v2 + 0.1 * 9.0  # 1.314
    for (_, state, updates), v, g in zip(trace, [v1, v2, v3], [2.0, 1.0, -3.0]):
        assert state.v["w"][0, 0] == pytest.approx(v, rel=1e-14)
        assert updates["w"][0, 0] == pytest.approx(-eta * g / (math.sqrt(v) + eps), rel=1e-14)
    # the first step is eta g / sqrt(0.1 g^2) = eta / sqrt(0.1) in size, whatever g
    assert abs(trace[0][2]["w"][0, 0]) == pytest.approx(eta / math.sqrt(0.1), rel=1e-7)


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_adam_first_step_is_eta_times_sign_of_gradient(eps):
    eta = 0.01
    g = np.array([1e-3, -0.3, 5.0, -1e3, 0.0])
    (_, state, updates), = _feed("adam", [g], {"eta": eta, "beta1": 0.9, "beta2": 0.999, "eps": eps})
    # m^ = g and v^ = g^2 after one step, so the step is eta g / (|g| + eps): eta sign(g) up to eps
    np.testing.assert_allclose(updates["w"][0], -eta * np.sign(g) * np.abs(g) / (np.abs(g) + eps), rtol=1e-12)
    assert np.all(np.abs(updates["w"][0] + eta * np.sign(g)) <= eta * eps / np.maximum(np.abs(g), eps) + eta * 1e-14)
    assert state.count == 1


def test_adam_bias_correction_at_steps_1_2_3_by_hand():
    eta, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    trace = _feed("adam", [[1.0], [2.0], [-1.0]], {"eta": eta, "beta1": b1, "beta2": b2, "eps": eps})
    # moments by hand
    m1, v1 = 0.1 * 1.0, 0.001 * 1.0
    m2, v2 = 0.9 * m1 + 0.1 * 2.0, 0.999 * v1 + 0.001 * 4.0  # 0.29, 0.004999
    m3, v3 = 0.9 * m2 + 0.1 * -1.0, 0.999 * v2 + 0.001 * 1.0  # 0.161, 0.005994001
    # bias corrections 1 - beta^t: t=1: 0.1, 0.001; t=2: 0.19, 0.001999; t=3: 0.271, 0.002997001
    corrections = [(0.1, 0.001), (0.19, 0.001999), (0.271, 0.002997001)]
    for (_, state, updates), m, v, (c1, c2), t in zip(trace, [m1, m2, m3], [v1, v2, v3], corrections, [1, 2, 3]):
        assert state.count == t
        assert state.m["w"][0, 0] == pytest.approx(m, rel=1e-13)
        assert state.v["w"][0, 0] == pytest.approx(v, rel=1e-13)
        step = -eta * (m / c1) / (math.sqrt(v / c2) + eps)
        assert updates["w"][0, 0] == pytest.approx(step, rel=1e-12)
    # and the numbers themselves: step 2 is 0.1 * (0.29/0.19) / sqrt(0.004999/0.001999)
    assert trace[1][2]["w"][0, 0] == pytest.approx(-0.1 * 1.5263157894736843 / (math.sqrt(2.5007503751875937) + 1e-8),
                                                   rel=1e-12)
    # without the correction the first step would be 0.1 * 0.1 / sqrt(0.001) ~ 0.316, not 0.1
    assert trace[0][2]["w"][0, 0] == pytest.approx(-0.1, rel=1e-6)


ADAPTIVE = {  # hyperparameters under which eps inside vs outside the square root differ by a factor ~100
    "adagrad": {"eta": 1.0, "eps": 1e-4},
    "rmsprop": {"eta": 1.0, "beta": 0.0, "eps": 1e-4},  # beta = 0: v_t = g_t^2
    "adam": {"eta": 1.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-4},
}


@pytest.mark.parametrize("name", sorted(ADAPTIVE))
def test_eps_sits_outside_the_square_root(name):
    g = 1e-6  # after one step every adaptive rule has sqrt(v^) = |g|
    (_, _, updates), = _feed(name, [[g]], ADAPTIVE[name])
    outside = -1.0 * g / (g + 1e-4)  # ~ -0.0099
    inside = -1.0 * g / math.sqrt(g * g + 1e-4)  # ~ -0.0001
    assert updates["w"][0, 0] == pytest.approx(outside, rel=1e-9)
    assert abs(updates["w"][0, 0] - inside) > 10 * abs(inside)


def test_hyperparameters_rejects_unknown_names():
    assert optim.hyperparameters("adam", eta=0.1)["eta"] == 0.1
    assert optim.hyperparameters("adam")["beta2"] == optim.OPTIMIZERS["adam"].defaults["beta2"]
    with pytest.raises(KeyError):
        optim.hyperparameters("gd", gamma=0.9)


@pytest.mark.parametrize("name", ALL)
def test_update_is_pure(name):
    """update() and lookahead() must not modify their inputs (the training loop reuses its gradient buffer)."""
    opt = optim.OPTIMIZERS[name]
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(2, 3)), "b": rng.normal(size=(2, 4, 2))}
    state = opt.init(params)
    hyper = optim.hyperparameters(name)
    for _ in range(2):  # a non-trivial state first
        grads = {k: rng.normal(size=p.shape) for k, p in params.items()}
        params, state = optim.step(opt, params, state, hyper, lambda p: grads)
    before = (copy.deepcopy(params), copy.deepcopy(state), copy.deepcopy(grads))
    opt.lookahead(params, state, hyper)
    updates, new_state = opt.update(grads, state, hyper)
    for x, y in zip(before, (params, state, grads)):
        for a, b in zip(_leaves(x), _leaves(y)):
            np.testing.assert_array_equal(a, b)
    grads["a"][...] = 1e9  # overwriting the gradient afterwards must not change what update returned
    assert np.all(np.abs(updates["a"]) < 1e8)
    assert all(np.all(np.abs(a) < 1e8) for a in _leaves(new_state))


def _leaves(x):
    if isinstance(x, dict):
        return [a for k in sorted(x) for a in _leaves(x[k])]
    if isinstance(x, tuple):
        return [a for f in x for a in _leaves(f)]
    return [np.asarray(x)]


# --- 2. An independent reference on the lecture's toy problem ------------------------------------------------------
# Plain Python floats, written from the lecture's equations (not from study/core/optim.py). The gradient of
# sum_i 0.5 (f(x_i) - y_i)^2 with f = sigmoid(w x + b) is the lecture's grad_w / grad_b summed over the points.
LECTURE_X, LECTURE_Y = [0.5, 2.5], [0.2, 0.9]


def _f(w, b, x):
    return 1.0 / (1.0 + math.exp(-(w * x + b)))


def _grad(w, b, xs, ys):
    dw = db = 0.0
    for x, y in zip(xs, ys):
        fx = _f(w, b, x)
        dw += (fx - y) * fx * (1 - fx) * x
        db += (fx - y) * fx * (1 - fx)
    return dw, db


def reference(name, h, batches, epochs, xs=LECTURE_X, ys=LECTURE_Y, w=-2.0, b=-2.0):
    """(w, b) after every update; ``batches`` lists the point indices of each update of an epoch, in order."""
    vw = vb = mw = mb = 0.0  # history (momentum, NAG, AdaGrad, RMSProp v; Adam's v) and Adam's first moment
    t = 0
    trajectory = []
    for _ in range(epochs):
        for idx in batches:
            bx, by = [xs[i] for i in idx], [ys[i] for i in idx]
            t += 1
            if name == "gd":  # w_{t+1} = w_t - eta grad
                dw, db = _grad(w, b, bx, by)
                w, b = w - h["eta"] * dw, b - h["eta"] * db
            elif name == "momentum":  # v_t = gamma v_{t-1} + eta grad; w_{t+1} = w_t - v_t
                dw, db = _grad(w, b, bx, by)
                vw = h["gamma"] * vw + h["eta"] * dw
                vb = h["gamma"] * vb + h["eta"] * db
                w, b = w - vw, b - vb
            elif name == "nag":  # w_temp = w_t - gamma v_{t-1}; w_{t+1} = w_temp - eta grad(w_temp); v_t = ...
                tw, tb = w - h["gamma"] * vw, b - h["gamma"] * vb
                dw, db = _grad(tw, tb, bx, by)
                w, b = tw - h["eta"] * dw, tb - h["eta"] * db
                vw = h["gamma"] * vw + h["eta"] * dw
                vb = h["gamma"] * vb + h["eta"] * db
            elif name == "adagrad":  # v_t = v_{t-1} + grad^2; w_{t+1} = w_t - eta / (sqrt(v_t) + eps) grad
                dw, db = _grad(w, b, bx, by)
                vw, vb = vw + dw**2, vb + db**2
                w = w - h["eta"] / (math.sqrt(vw) + h["eps"]) * dw
                b = b - h["eta"] / (math.sqrt(vb) + h["eps"]) * db
            elif name == "rmsprop":  # v_t = beta v_{t-1} + (1 - beta) grad^2; same step as AdaGrad
                dw, db = _grad(w, b, bx, by)
                vw = h["beta"] * vw + (1 - h["beta"]) * dw**2
                vb = h["beta"] * vb + (1 - h["beta"]) * db**2
                w = w - h["eta"] / (math.sqrt(vw) + h["eps"]) * dw
                b = b - h["eta"] / (math.sqrt(vb) + h["eps"]) * db
            elif name == "adam":  # m, v as EMAs of grad and grad^2; bias-corrected; eps outside the sqrt
                dw, db = _grad(w, b, bx, by)
                b1, b2 = h["beta1"], h["beta2"]
                mw, mb = b1 * mw + (1 - b1) * dw, b1 * mb + (1 - b1) * db
                vw, vb = b2 * vw + (1 - b2) * dw**2, b2 * vb + (1 - b2) * db**2
                mw_hat, mb_hat = mw / (1 - b1**t), mb / (1 - b1**t)
                vw_hat, vb_hat = vw / (1 - b2**t), vb / (1 - b2**t)
                w = w - h["eta"] / (math.sqrt(vw_hat) + h["eps"]) * mw_hat
                b = b - h["eta"] / (math.sqrt(vb_hat) + h["eps"]) * mb_hat
            else:
                raise AssertionError(f"no reference for {name}")
            trajectory.append((w, b))
    return np.array(trajectory)


LECTURE_HYPER = {  # the lecture's eta = 1, gamma = 0.9 for the first three; lively settings for the adaptive ones
    "gd": {"eta": 1.0},
    "momentum": {"eta": 1.0, "gamma": 0.9},
    "nag": {"eta": 1.0, "gamma": 0.9},
    "adagrad": {"eta": 0.1, "eps": 1e-8},
    "rmsprop": {"eta": 0.01, "beta": 0.9, "eps": 1e-8},
    "adam": {"eta": 0.05, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}


def _study_trajectory(name, hyper, batch_size, epochs, split=None, w0=-2.0, b0=-2.0):
    net = SigmoidNeuron(reduction="sum")
    result = train(net, split or load("toy"), name, hyper, batch_size, epochs, seed=0, theta0=net.init(w0, b0),
                   shuffle=False, validate=False, record_steps=True)
    return result.steps.theta[0, 1:]  # the parameters after each update


def test_reference_matches_the_lecture_equations_on_known_values():
    """The reference itself, checked by hand: the first GD step from (-2, -2) with eta = 1."""
    f1, f2 = 1 / (1 + math.exp(3.0)), 1 / (1 + math.exp(7.0))  # sigmoid(-2*0.5-2), sigmoid(-2*2.5-2)
    dw = (f1 - 0.2) * f1 * (1 - f1) * 0.5 + (f2 - 0.9) * f2 * (1 - f2) * 2.5
    db = (f1 - 0.2) * f1 * (1 - f1) + (f2 - 0.9) * f2 * (1 - f2)
    np.testing.assert_allclose(reference("gd", {"eta": 1.0}, [[0, 1]], 1)[0], [-2 - dw, -2 - db], rtol=1e-15)


@pytest.mark.parametrize("mode", ["full", "stochastic"])
@pytest.mark.parametrize("name", sorted(LECTURE_HYPER))
def test_study_matches_the_reference_on_the_toy_problem(name, mode):
    epochs = 400
    batches = [[0, 1]] if mode == "full" else [[0], [1]]  # stochastic: per point, in the given order
    ref = reference(name, LECTURE_HYPER[name], batches, epochs)
    got = _study_trajectory(name, LECTURE_HYPER[name], "full" if mode == "full" else 1, epochs)
    assert got.shape == ref.shape == (epochs * len(batches), 2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    assert np.abs(ref[-1] - ref[0]).max() > 0.5  # the comparison covers a real journey, not a standstill


@pytest.mark.parametrize("name", sorted(LECTURE_HYPER))
def test_study_matches_the_reference_with_mini_batches(name):
    """Five points, B = 2, no shuffling: batches [0, 1], [2, 3] and the smaller last batch [4]."""
    xs, ys = [0.5, 2.5, -1.0, 1.5, 3.0], [0.2, 0.9, 0.1, 0.6, 0.95]
    X, Y = np.array(xs)[:, None], np.array(ys)[:, None]
    split = Split("five", "regression", X, Y, X, Y, X, Y)
    hyper = {**LECTURE_HYPER[name], "eta": LECTURE_HYPER[name]["eta"] / 2}
    ref = reference(name, hyper, [[0, 1], [2, 3], [4]], 150, xs, ys, w=-1.0, b=0.5)
    got = _study_trajectory(name, hyper, 2, 150, split, w0=-1.0, b0=0.5)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


# --- 3. Every registered optimizer reaches the minimum --------------------------------------------------------------
# Hyperparameters that bring each rule to the minimum within the step budget; a new optimizer gets its defaults
# (add a line here if they are not enough).
TOY_HYPER = {
    "gd": {"eta": 5.0},
    "momentum": {"eta": 1.0, "gamma": 0.9},
    "nag": {"eta": 1.0, "gamma": 0.9},
    "adagrad": {"eta": 1.0, "eps": 1e-8},
    "rmsprop": {"eta": 0.005, "beta": 0.9, "eps": 1e-8},  # moves ~eta per step: it hovers within ~eta of the minimum
    "adam": {"eta": 0.05, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
QUAD_HYPER = {
    "gd": {"eta": 0.019},  # < 2 / lambda_max = 0.02
    "momentum": {"eta": 0.01, "gamma": 0.9},
    "nag": {"eta": 0.01, "gamma": 0.9},
    "adagrad": {"eta": 0.5, "eps": 1e-8},
    "rmsprop": {"eta": 0.002, "beta": 0.9, "eps": 1e-8},
    "adam": {"eta": 0.02, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}


def _minimise(name, hyper, grad, theta0, steps):
    opt = optim.OPTIMIZERS[name]
    params = {"theta": np.array(theta0, float)}
    state = opt.init(params)
    for _ in range(steps):
        params, state = optim.step(opt, params, state, hyper, lambda p: {"theta": grad(p["theta"])})
    return params["theta"]


@pytest.mark.parametrize("name", ALL)
def test_every_optimizer_reaches_the_toy_minimum(name):
    net = SigmoidNeuron(reduction="sum")
    X, Y = np.array(LECTURE_X)[:, None], np.array(LECTURE_Y)[:, None]
    # the two points are fitted exactly: w x_i + b = logit(y_i)
    logit = [math.log(y / (1 - y)) for y in LECTURE_Y]
    w_star = (logit[1] - logit[0]) / (LECTURE_X[1] - LECTURE_X[0])
    b_star = logit[0] - w_star * LECTURE_X[0]
    hyper = TOY_HYPER.get(name, optim.hyperparameters(name))
    theta = _minimise(name, hyper, lambda th: net.loss_and_grad(th, X, Y)[1], net.init(-2.0, -2.0), 3000)
    assert net.loss(theta, X, Y)[0] < 1e-5, f"{name} with {hyper} did not reach the toy minimum (see TOY_HYPER)"
    np.testing.assert_allclose(theta[0], [w_star, b_star], atol=1e-2)


@pytest.mark.parametrize("name", ALL)
def test_every_optimizer_reaches_the_minimum_of_an_ill_conditioned_quadratic(name):
    # f(x) = x^T A x / 2 with A's eigenvalues 1 and 100 along rotated axes; minimum at 0
    c, s = math.cos(0.5), math.sin(0.5)
    R = np.array([[c, -s], [s, c]])
    A = R @ np.diag([1.0, 100.0]) @ R.T
    hyper = QUAD_HYPER.get(name, optim.hyperparameters(name))
    theta = _minimise(name, hyper, lambda th: th @ A, [[1.0, 1.0], [-2.0, 0.5]], 3000)  # two members
    assert np.abs(theta).max() < 1e-2, f"{name} with {hyper} did not reach the quadratic's minimum (QUAD_HYPER)"


# --- 4. Population members equal single runs (optim directly) -------------------------------------------------------
def population_hyper(name, k=4):
    """K distinct hyperparameter sets around the defaults: learning rates over a decade, other knobs varied."""
    spread = {"eta": [0.5, 1.0, 2.0, 5.0], "gamma": [0.5, 0.8, 0.9, 0.95], "beta": [0.5, 0.9, 0.99, 0.999],
              "beta1": [0.0, 0.8, 0.9, 0.95], "beta2": [0.9, 0.99, 0.999, 0.9999], "eps": [1e-8, 1e-6, 1e-4, 1e-3]}
    out = {}
    for key, default in optim.OPTIMIZERS[name].defaults.items():
        if key == "eta":
            out[key] = default * np.array(spread["eta"][:k])
        elif key in spread:
            out[key] = np.array(spread[key][:k])
        else:  # a hyperparameter this test does not know: the default for every member
            out[key] = np.full(k, float(default))
    return out


def _population_grad(params):
    """A non-linear, elementwise-per-member gradient (each member sees only its own parameters)."""
    return {"W": np.tanh(params["W"]) + 0.3 * params["W"] ** 3 - 0.2,
            "b": params["b"] * np.array([1.0, 50.0])}


@pytest.mark.parametrize("name", ALL)
def test_population_equals_single_runs_in_optim(name):
    k = 4
    hyper = population_hyper(name, k)
    rng = np.random.default_rng(1)
    params0 = {"W": rng.normal(size=(k, 3, 2)), "b": rng.normal(size=(k, 2))}
    opt = optim.OPTIMIZERS[name]

    params, state = params0, opt.init(params0)
    for _ in range(60):
        params, state = optim.step(opt, params, state, hyper, _population_grad)
    for j in range(k):
        single = {n: p[j:j + 1] for n, p in params0.items()}
        h = {n: float(v[j]) for n, v in hyper.items()}  # plain scalars
        s_state = opt.init(single)
        for _ in range(60):
            single, s_state = optim.step(opt, single, s_state, h, _population_grad)
        for n in params:
            np.testing.assert_allclose(params[n][j:j + 1], single[n], rtol=1e-12, atol=1e-15)
    assert not np.allclose(params["W"][0], params["W"][-1])  # the members really differ


@pytest.mark.parametrize("name", ALL)
def test_select_members_keeps_the_chosen_members_state(name):
    k = 4
    hyper = population_hyper(name, k)
    rng = np.random.default_rng(2)
    params = {"W": rng.normal(size=(k, 3, 2)), "b": rng.normal(size=(k, 2))}
    opt = optim.OPTIMIZERS[name]
    state = opt.init(params)
    ref_params, ref_state = params, state
    for _ in range(10):
        params, state = optim.step(opt, params, state, hyper, _population_grad)
    keep = np.array([True, False, True, True])
    params = {n: p[keep] for n, p in params.items()}
    state = optim.select_members(state, keep)
    hyper_kept = {n: v[keep] for n, v in hyper.items()}
    for _ in range(10):
        params, state = optim.step(opt, params, state, hyper_kept, _population_grad)
    # the same 20 steps without ever dropping member 1
    for _ in range(20):
        ref_params, ref_state = optim.step(opt, ref_params, ref_state, hyper, _population_grad)
    for n in params:
        np.testing.assert_allclose(params[n], ref_params[n][keep], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ALL)
def test_a_diverging_member_leaves_the_others_alone_in_optim(name):
    """One member overflows to inf / nan; elementwise rules must not let it leak into the others."""
    opt = optim.OPTIMIZERS[name]
    hyper = population_hyper(name, 3)
    hyper["eta"][1] = 1e300
    rng = np.random.default_rng(3)
    params0 = {"W": rng.normal(size=(3, 3, 2)), "b": rng.normal(size=(3, 2))}
    params, state = params0, opt.init(params0)
    with np.errstate(all="ignore"):
        for _ in range(20):
            params, state = optim.step(opt, params, state, hyper, _population_grad)
    assert not np.isfinite(params["W"][1]).all()
    for j in (0, 2):
        single = {n: p[j:j + 1] for n, p in params0.items()}
        h = {n: float(v[j]) for n, v in hyper.items()}
        s_state = opt.init(single)
        for _ in range(20):
            single, s_state = optim.step(opt, single, s_state, h, _population_grad)
        for n in params:
            assert np.isfinite(params[n][j]).all()
            np.testing.assert_allclose(params[n][j:j + 1], single[n], rtol=1e-12, atol=1e-15)
