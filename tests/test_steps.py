"""The trainer's step record (``train(record_steps=True)``, ``study.core.train.Steps``): equal, bit for bit, to a hand
loop of each registered optimizer's elementwise rule on the lecture's toy problem; NaN after a member stopped or
blew up; cut at the last update any member made; refused by the compiled path."""
from __future__ import annotations

import numpy as np
import pytest

from study.core import optim
from study.core.data import Split, load
from study.core.nn import MLP, SigmoidNeuron
from study.core.train import train

ALL = sorted(optim.OPTIMIZERS)
EPOCHS = 30


def _lively(name: str) -> dict[str, np.ndarray]:
    """Two members: the registry's defaults with a learning rate that moves the neuron in a few epochs, and the
    same with the other constants changed too (so a hyperparameter mixed up between members shows)."""
    defaults = optim.OPTIMIZERS[name].defaults
    out = {}
    for key, value in defaults.items():
        if key == "eta":
            out[key] = np.array([0.5, 1.5]) if value >= 0.01 else np.array([0.05, 0.15])
        elif key == "eps":
            out[key] = np.array([value, 10 * value])
        else:  # an averaging constant (gamma, beta, beta1, beta2)
            out[key] = np.array([value, 0.5 * value])
    return out


def _hand_loop(name: str, hyper: dict, batches: list[list[int]], theta0: np.ndarray, epochs: int):
    """The update rule applied by hand: the registry's elementwise ``rule`` (and ``lookahead_rule``, ``step_terms``)
    on the whole (K, P) buffer, state started at zeros, one batch after another; every step kept."""
    opt = optim.OPTIMIZERS[name]
    net, split = SigmoidNeuron(reduction="sum"), load("toy")
    h = {k: np.asarray(v, float)[:, None] for k, v in hyper.items()}  # (K, 1) against (K, P)
    theta = theta0.copy()
    state = {s: np.zeros_like(theta) for s in opt.state}
    seen = {"theta": [theta.copy()], "gradient": [], "update": [], **{s: [state[s].copy()] for s in opt.state}}
    t = 0
    for _ in range(epochs):
        for idx in batches:
            t += 1
            point = theta if opt.lookahead_rule is None else opt.lookahead_rule(
                theta, *(state[s] for s in opt.state), *(h[k] for k in opt.hyper))
            _, g = net.loss_and_grad(point, split.X_train[idx], split.Y_train[idx])
            terms = opt.step_terms(t, h) if opt.step_terms else ()
            update, *after = opt.rule(g, *(state[s] for s in opt.state), *(h[k] for k in opt.hyper), *terms)
            state = dict(zip(opt.state, after))
            theta = theta + update
            for key, value in (("theta", theta), ("gradient", g), ("update", update), *state.items()):
                seen[key].append(value.copy())
    return {key: np.stack(values, axis=1) for key, values in seen.items()}  # (K, steps, P)


@pytest.mark.parametrize("batch_size, batches", [("full", [[0, 1]]), (1, [[0], [1]])], ids=["full", "stochastic"])
@pytest.mark.parametrize("name", ALL)
def test_the_step_record_equals_a_hand_loop_of_the_rule(name, batch_size, batches):
    hyper = _lively(name)
    net = SigmoidNeuron(reduction="sum")
    theta0 = np.array([[-2.0, -2.0], [0.5, 1.0]])  # the lecture's start, and another
    result = train(net, load("toy"), name, hyper, batch_size, EPOCHS, seed=0, theta0=theta0, shuffle=False,
                   validate=False, record_steps=True)
    steps, want = result.steps, _hand_loop(name, hyper, batches, theta0, EPOCHS)
    updates = EPOCHS * len(batches)
    assert steps.theta.shape == (2, updates + 1, 2) and steps.update.shape == steps.gradient.shape == (2, updates, 2)
    np.testing.assert_array_equal(steps.epoch, np.concatenate([[0], np.repeat(np.arange(1, EPOCHS + 1),
                                                                             len(batches))]))
    for key in ("theta", "gradient", "update"):
        np.testing.assert_array_equal(getattr(steps, key), want[key], err_msg=key)
    assert set(steps.state) == set(optim.OPTIMIZERS[name].state)
    for key, values in steps.state.items():
        np.testing.assert_array_equal(values, want[key], err_msg=key)
    np.testing.assert_array_equal(steps.theta[:, -1], result.theta)  # the record ends where the run did
    np.testing.assert_array_equal(steps.theta[:, 1:], steps.theta[:, :-1] + steps.update)
    assert np.abs(steps.theta[:, -1] - theta0).max() > 0.1  # a real journey, not a standstill
    alone = steps.member(1)
    assert alone.theta.shape == (1, updates + 1, 2) and np.array_equal(alone.theta[0], steps.theta[1])
    toy = load("toy")
    losses = steps.losses(net, toy.X_train, toy.Y_train)  # (K, steps + 1): the error at every recorded point
    np.testing.assert_array_equal(losses[:, [0, -1]].T, [net.loss(theta0, toy.X_train, toy.Y_train),
                                                         net.loss(result.theta, toy.X_train, toy.Y_train)])


def test_a_stopped_member_reads_nan_and_the_record_ends_with_the_last_update():
    """Member 1 is stopped by a callback after epoch 2, member 0 after epoch 3: the run ends there."""
    def stop(epoch, metrics, members):
        return ((members == 1) & (epoch == 2)) | ((members == 0) & (epoch == 3))

    net = SigmoidNeuron(reduction="sum")
    result = train(net, load("toy"), "momentum", {"eta": 1.0, "gamma": 0.9}, 1, 10, seed=0,
                   theta0=net.init(-2.0, -2.0, population=2), shuffle=False, validate=False, callbacks=(stop,),
                   record_steps=True)
    steps = result.steps
    assert steps.theta.shape == (2, 3 * 2 + 1, 2) and list(steps.epoch) == [0, 1, 1, 2, 2, 3, 3]
    assert np.isfinite(steps.theta[0]).all() and np.isfinite(steps.state["v"][0]).all()
    assert np.isfinite(steps.theta[1, :5]).all() and np.isnan(steps.theta[1, 5:]).all()
    assert np.isnan(steps.update[1, 4:]).all() and np.isnan(steps.state["v"][1, 5:]).all()
    np.testing.assert_array_equal(steps.theta[1, 4], steps.theta[0, 4])  # the same run until it stopped


def test_a_member_that_blows_up_reads_nan_from_its_first_non_finite_step():
    """Linear regression, GD: member 0 at a sane eta, member 1 at one that overflows its parameters within its first
    epoch (each step multiplies them by about 1e100): from that step on its rows are NaN, not inf."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 3))
    Y = X @ np.array([[1.0], [-2.0], [0.5]])
    split = Split(name="line", task="regression", X_train=X, Y_train=Y, X_val=X, Y_val=Y, X_test=X, Y_test=Y)
    net = MLP((3, 1), task="regression")
    result = train(net, split, "gd", {"eta": np.array([0.05, 1e100])}, 4, 40, seed=0,
                   theta0=net.init(0, population=2), validate=False, record_steps=True, engine="numpy")
    steps = result.steps
    assert list(result.diverged) == [False, True] and result.epochs_run[1] == 1
    assert steps.theta.shape[1] == 40 * 4 + 1 and np.isfinite(steps.theta[0]).all()  # member 0 ran to the end
    finite = np.isfinite(steps.theta[1]).all(axis=1)
    first_bad = int(np.argmin(finite))
    assert 1 < first_bad <= 4  # within the one epoch it ran
    assert np.isnan(steps.theta[1, first_bad:]).all() and np.isnan(steps.update[1, first_bad - 1:]).all()
    assert np.isfinite(steps.update[1, :first_bad - 1]).all()


def test_the_compiled_path_keeps_no_steps():
    split = load("iris", seed=0)
    net = MLP((split.n_features, 4, split.n_outputs))
    with pytest.raises(ValueError, match="keeps no steps"):
        train(net, split, "adam", optim.hyperparameters("adam"), 16, 1, seed=0, theta0=net.init(0),
              engine="compiled", record_steps=True)
    assert train(net, split, "adam", optim.hyperparameters("adam"), 16, 1, seed=0, theta0=net.init(0)).steps is None
