"""The networks: losses written out independently, gradients against central finite differences in float64."""
from __future__ import annotations

import math

import numpy as np
import pytest

from study.core.nn import ACTIVATIONS, MLP, SigmoidNeuron


def numeric_grad(loss, theta, h=1e-5):
    """Central differences of a per-member loss (K,) with respect to theta (K, P).

    Members are independent, so perturbing column p of every member at once gives every member's derivative."""
    grad = np.zeros_like(theta)
    for p in range(theta.shape[1]):
        up, down = theta.copy(), theta.copy()
        up[:, p] += h
        down[:, p] -= h
        grad[:, p] = (loss(up) - loss(down)) / (2 * h)
    return grad


def assert_grad_close(analytic, numeric, rtol=1e-6, atol=1e-9):
    """Relative agreement, with an absolute floor for derivatives near 0 (where rounding noise of ~eps/h rules)."""
    excess = np.abs(analytic - numeric) - (rtol * (np.abs(analytic) + np.abs(numeric)) + atol)
    worst = np.unravel_index(excess.argmax(), excess.shape)
    assert excess.max() <= 0, f"gradient mismatch at {worst}: analytic {analytic[worst]}, numeric {numeric[worst]}"


# --- the sigmoid neuron ---------------------------------------------------------------------------------------------
def test_sigmoid_neuron_is_the_lecture_error():
    net = SigmoidNeuron()
    X, Y = np.array([[0.5], [2.5]]), np.array([[0.2], [0.9]])
    theta = net.init(-2.0, -2.0)
    assert theta.shape == (1, 2) and net.n_params == 2
    err = sum(0.5 * (1 / (1 + math.exp(-(-2 * x - 2))) - y) ** 2 for x, y in zip([0.5, 2.5], [0.2, 0.9]))
    assert net.loss(theta, X, Y)[0] == pytest.approx(err, rel=1e-14)
    loss, grad = net.loss_and_grad(theta, X, Y)
    assert loss[0] == pytest.approx(err, rel=1e-14)
    # the lecture's grad_w, grad_b summed over the points
    dw = db = 0.0
    for x, y in zip([0.5, 2.5], [0.2, 0.9]):
        fx = 1 / (1 + math.exp(-(-2 * x - 2)))
        dw += (fx - y) * fx * (1 - fx) * x
        db += (fx - y) * fx * (1 - fx)
    np.testing.assert_allclose(grad[0], [dw, db], rtol=1e-13)
    mean = SigmoidNeuron(reduction="mean")
    assert mean.loss(theta, X, Y)[0] == pytest.approx(err / 2, rel=1e-14)
    np.testing.assert_allclose(mean.loss_and_grad(theta, X, Y)[1][0], [dw / 2, db / 2], rtol=1e-13)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("n_features", [1, 3])
def test_sigmoid_neuron_gradient_matches_finite_differences(reduction, n_features):
    rng = np.random.default_rng(n_features)
    net = SigmoidNeuron(n_features=n_features, reduction=reduction)
    X, Y = rng.normal(size=(7, n_features)), rng.uniform(size=(7, 1))
    theta = rng.normal(size=(3, net.n_params))  # three different members
    loss, grad = net.loss_and_grad(theta, X, Y)
    np.testing.assert_allclose(loss, net.loss(theta, X, Y), rtol=1e-14)
    assert_grad_close(grad, numeric_grad(lambda t: net.loss(t, X, Y), theta))
    # member k's gradient is the gradient of member k alone
    for k in range(3):
        np.testing.assert_allclose(net.loss_and_grad(theta[k:k + 1], X, Y)[1], grad[k:k + 1], rtol=1e-13)


def test_sigmoid_neuron_writes_into_the_given_buffer():
    net = SigmoidNeuron(n_features=2)
    X, Y = np.ones((4, 2)), np.zeros((4, 1))
    theta = np.array([[0.1, -0.2, 0.3], [1.0, 2.0, -3.0]])
    out = np.full_like(theta, np.nan)
    _, grad = net.loss_and_grad(theta, X, Y, out=out)
    assert grad is out and np.isfinite(out).all()


# --- the MLP ------------------------------------------------------------------------------------------------------
def _members(net, k, seed):
    """K members that differ: the seeded init plus a different perturbation each (biases non-zero too)."""
    rng = np.random.default_rng(seed)
    theta = net.init(seed, population=k)
    return theta + 0.3 * rng.normal(size=theta.shape)


def _problem(task, n, d, out, seed):
    rng = np.random.default_rng(100 + seed)
    X = rng.normal(size=(n, d))
    if task == "classification":
        Y = np.eye(out)[rng.integers(0, out, n)]
    else:
        Y = rng.normal(size=(n, out))
    return X, Y


def _reference_loss(net, theta_k, X, Y):
    """One member's loss, written independently with plain numpy loops over the layers."""
    act = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}
    h, offset = X, 0
    for i, (fi, fo) in enumerate(zip(net.sizes[:-1], net.sizes[1:]), start=1):
        W = theta_k[offset:offset + fi * fo].reshape(fi, fo)
        offset += fi * fo
        b = theta_k[offset:offset + fo]
        offset += fo
        z = h @ W + b
        h = z if i == net.n_layers else act[net.activation](z)
    if net.task == "classification":
        p = np.exp(h) / np.exp(h).sum(axis=1, keepdims=True)
        return -np.mean(np.log((p * Y).sum(axis=1)))
    return 0.5 * np.mean((h - Y) ** 2)


SHAPES = [(4, 5, 3), (3, 8, 6, 2), (5, 1, 4), (2, 16, 3)]


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("sizes", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_mlp_gradient_matches_finite_differences(sizes, activation, task):
    seed = sum(sizes)
    net = MLP(sizes, activation=activation, task=task)
    X, Y = _problem(task, 9, sizes[0], sizes[-1], seed)
    theta = _members(net, 3, seed)
    loss, grad = net.loss_and_grad(theta, X, Y)
    for k in range(3):
        assert loss[k] == pytest.approx(_reference_loss(net, theta[k], X, Y), rel=1e-12)
    np.testing.assert_allclose(loss, net.loss(theta, X, Y), rtol=1e-14)
    assert_grad_close(grad, numeric_grad(lambda t: net.loss(t, X, Y), theta))
    for k in range(3):  # a member's gradient does not depend on the other members
        np.testing.assert_allclose(net.loss_and_grad(theta[k:k + 1], X, Y)[1], grad[k:k + 1], rtol=1e-12,
                                   atol=1e-15)


def test_mlp_classification_loss_is_stable_for_large_logits():
    net = MLP((2, 3), task="classification")
    theta = np.zeros((1, net.n_params))
    net.unpack(theta)["b1"][0] = [1000.0, 0.0, -1000.0]
    X, Y = np.zeros((2, 2)), np.array([[1.0, 0, 0], [0, 1.0, 0]])
    loss, grad = net.loss_and_grad(theta, X, Y)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    assert loss[0] == pytest.approx(500.0, rel=1e-12)  # (0 + 1000) / 2
    probs = net.predict(theta, X)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0)


def test_mlp_layout_views_and_packing():
    net = MLP((4, 5, 3))
    assert net.n_params == 4 * 5 + 5 + 5 * 3 + 3
    theta = np.arange(2 * net.n_params, dtype=float).reshape(2, -1)
    p = net.unpack(theta)
    assert p["W1"].shape == (2, 4, 5) and p["b1"].shape == (2, 5) and p["W2"].shape == (2, 5, 3)
    np.testing.assert_array_equal(net.pack(p), theta)
    p["b2"][1, 0] = -1.0  # views: writing through them writes theta
    assert theta[1, 4 * 5 + 5 + 5 * 3] == -1.0


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_init_is_seeded_and_shared_by_the_members(activation):
    net = MLP((6, 10, 3), activation=activation)
    a, b, c = net.init(0, population=3), net.init(0, population=3), net.init(1, population=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a[0], a[2])
    p = net.unpack(a)
    assert np.all(p["b1"] == 0) and np.all(p["b2"] == 0)
    assert np.std(p["W1"]) > 0.05


def test_mlp_evaluate_accuracy_and_regression():
    net = MLP((2, 2), task="classification")
    theta = np.zeros((2, net.n_params))
    net.unpack(theta)["W1"][0] = np.eye(2)  # member 0 predicts the larger input; member 1 predicts the smaller
    net.unpack(theta)["W1"][1] = -np.eye(2)
    X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    Y = np.eye(2)[[0, 1, 0, 0]]
    loss, acc = net.evaluate(theta, X, Y)
    np.testing.assert_allclose(acc, [0.75, 0.25])
    np.testing.assert_allclose(loss, net.loss(theta, X, Y))
    reg = MLP((2, 3, 1), task="regression")
    _, acc = reg.evaluate(reg.init(0), X, np.zeros((4, 1)))
    assert acc is None


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError):
        MLP((2, 3, 2), activation="swish")
