"""The training loop: populations, divergence, callbacks, history, update counts."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from study.core import optim
from study.core.data import Split, load
from study.core.nn import MLP, SigmoidNeuron
from study.core.train import METRICS, train

ALL = sorted(optim.OPTIMIZERS)


@pytest.fixture(scope="module")
def iris():
    return load("iris", seed=0)


def _mlp(split, activation="tanh"):
    return MLP((split.n_features, 6, split.n_outputs), activation=activation, task=split.task)


def population_hyper(name, k):
    """K distinct hyperparameter sets: learning rates spread around the default, the other knobs varied."""
    spread = {"eta": [0.5, 2.0, 5.0, 1.0, 3.0], "gamma": [0.5, 0.8, 0.9, 0.95, 0.7],
              "beta": [0.5, 0.9, 0.99, 0.999, 0.8], "beta1": [0.0, 0.8, 0.9, 0.95, 0.5],
              "beta2": [0.9, 0.99, 0.999, 0.9999, 0.95], "eps": [1e-8, 1e-6, 1e-4, 1e-3, 1e-7]}
    out = {}
    for key, default in optim.OPTIMIZERS[name].defaults.items():
        if key == "eta":
            out[key] = 10 * default * np.array(spread["eta"][:k])  # lively enough to move in a few epochs
        elif key in spread:
            out[key] = np.array(spread[key][:k])
        else:
            out[key] = np.full(k, float(default))
    return out


def _member(hyper, j):
    return {n: float(v[j]) for n, v in hyper.items()}


def _stop_member(original_index, at_epoch, calls=None):
    """A callback that stops one member (by its original index) after epoch ``at_epoch``."""
    def callback(epoch, metrics, members):
        if calls is not None:
            calls.append((epoch, members.copy(), {k: np.array(v) for k, v in metrics.items()}))
        return (members == original_index) & (epoch == at_epoch)
    return callback


# --- populations equal single runs --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_population_equals_single_runs(name, iris):
    """Four members: 0 and 3 run to the end, 1 is stopped by a callback after epoch 2, 2 diverges (eta huge).
    Each must equal the same member trained alone; the stopped and the diverged one must not disturb the others."""
    net, k, epochs = _mlp(iris), 4, 6
    hyper = population_hyper(name, k)
    hyper["eta"][2] = 1e7
    theta0 = net.init(0, population=k)
    pop = train(net, iris, name, hyper, 16, epochs, seed=5, theta0=theta0, callbacks=(_stop_member(1, 2),))

    assert pop.diverged.tolist() == [False, False, True, False]
    assert pop.pruned.tolist() == [False, True, False, False]
    assert pop.epochs_run[[0, 1, 3]].tolist() == [epochs, 2, epochs] and pop.epochs_run[2] < epochs
    for j in range(k):
        alone = train(net, iris, name, _member(hyper, j), 16, epochs if j != 1 else 2, seed=5,
                      theta0=theta0[j:j + 1])
        if j == 2:
            assert alone.diverged[0] and alone.epochs_run[0] == pop.epochs_run[2]
            continue
        np.testing.assert_allclose(pop.theta[j], alone.theta[0], rtol=1e-12, atol=1e-14, err_msg=f"member {j}")
        for metric in ("train_loss", "val_loss", "val_accuracy", "grad_norm"):
            ran = pop.epochs_run[j]
            np.testing.assert_allclose(pop.history[metric][j, :ran], alone.history[metric][0, :ran], rtol=1e-11,
                                       err_msg=f"{metric} of member {j}")
            assert np.isnan(pop.history[metric][j, ran:]).all()
    assert not np.allclose(pop.theta[0], pop.theta[3])  # the members really differ
    assert pop.final("val_loss")[0] < pop.initial_val_loss[0]  # and they learn


def test_members_with_the_same_hyperparameters_stay_identical(iris):
    net = _mlp(iris, "relu")
    theta0 = net.init(3, population=3)
    res = train(net, iris, "adam", optim.hyperparameters("adam", eta=0.01), 8, 3, seed=0, theta0=theta0)
    np.testing.assert_array_equal(res.theta[0], res.theta[1])
    np.testing.assert_array_equal(res.theta[0], res.theta[2])


# --- divergence -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gd", "momentum", "adam"])
def test_divergence_is_recorded_not_raised(name, iris):
    net = _mlp(iris)
    epochs = 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings leak out either
        res = train(net, iris, name, optim.hyperparameters(name, eta=1e7), "full" if name == "gd" else 8, epochs,
                    seed=0, theta0=net.init(0))
    assert res.diverged.tolist() == [True] and res.pruned.tolist() == [False]
    ran = res.epochs_run[0]
    assert 1 <= ran < epochs
    for metric in METRICS:
        assert res.history[metric].shape == (1, epochs)
        assert np.isnan(res.history[metric][0, ran:]).all(), metric
    assert not np.isfinite(res.history["val_loss"][0, ran - 1]) or \
        res.history["val_loss"][0, ran - 1] > 1e3 * res.initial_val_loss[0]


def test_a_saturated_neuron_is_stuck_not_diverged():
    """gd with eta = 1e6 on the toy throws the sigmoid into saturation: both outputs 1, gradient ~0. The loss
    stays at 0.5 ((1 - 0.2)^2 + (1 - 0.9)^2) = 0.325, finite and bounded: a poor run, not a divergence."""
    net = SigmoidNeuron()
    res = train(net, load("toy"), "gd", {"eta": 1e6}, "full", 20, seed=0, theta0=net.init(-2.0, -2.0))
    assert not res.diverged[0] and res.epochs_run[0] == 20
    np.testing.assert_allclose(res.history["train_loss"][0, 5:], 0.325, rtol=1e-6)


# --- history, callbacks, counts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", ["full", 1, 7, 32, 200])
def test_history_shapes_and_update_counts(batch_size, iris):
    net, k, epochs = _mlp(iris), 2, 3
    res = train(net, iris, "momentum", {"eta": np.array([0.01, 0.05]), "gamma": 0.9}, batch_size, epochs, seed=1,
                theta0=net.init(0, population=k))
    n = len(iris.X_train)
    per_epoch = 1 if batch_size == "full" else math.ceil(n / min(batch_size, n))
    assert set(res.history) == set(METRICS)
    for metric, h in res.history.items():
        assert h.shape == (k, epochs), metric
        assert np.isfinite(h).all(), metric
    np.testing.assert_array_equal(res.history["updates"], np.tile(per_epoch * np.arange(1, epochs + 1), (k, 1)))
    assert np.all(np.diff(res.history["seconds"], axis=1) >= 0)
    assert np.all((res.history["val_accuracy"] >= 0) & (res.history["val_accuracy"] <= 1))
    assert res.theta.shape == (k, net.n_params) and res.initial_val_loss.shape == (k,)
    assert res.epochs_run.tolist() == [epochs] * k and not res.diverged.any() and not res.pruned.any()
    np.testing.assert_allclose(res.initial_val_loss, net.evaluate(net.init(0, population=k), iris.X_val,
                                                                  iris.Y_val)[0])
    np.testing.assert_allclose(res.final("val_loss"), res.history["val_loss"][:, -1])


def test_regression_history_has_no_accuracy():
    split = load("diabetes", 0)
    net = MLP((split.n_features, 4, 1), task="regression")
    res = train(net, split, "rmsprop", optim.hyperparameters("rmsprop"), 64, 2, seed=0, theta0=net.init(0))
    assert np.isnan(res.history["val_accuracy"]).all()
    assert np.isfinite(res.history["val_loss"]).all()


def test_callbacks_see_aligned_metrics_and_can_stop_members(iris):
    net, k, epochs = _mlp(iris), 3, 5
    calls = []
    stop_middle = _stop_member(1, 2, calls)
    stop_last = _stop_member(2, 4)
    theta0 = net.init(1, population=k)
    hyper = {"eta": np.array([0.05, 0.1, 0.2])}
    res = train(net, iris, "gd", hyper, 30, epochs, seed=2, theta0=theta0, callbacks=(stop_middle, stop_last))
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5]
    assert [c[1].tolist() for c in calls] == [[0, 1, 2], [0, 1, 2], [0, 2], [0, 2], [0]]  # stopped ones drop out
    for epoch, members, metrics in calls:  # metrics[j] belongs to members[j]
        for metric in ("train_loss", "val_loss", "val_accuracy"):
            assert len(metrics[metric]) == len(members)
            np.testing.assert_array_equal(metrics[metric], res.history[metric][members, epoch - 1])
    assert res.pruned.tolist() == [False, True, True] and not res.diverged.any()
    assert res.epochs_run.tolist() == [5, 2, 4]
    assert np.isnan(res.history["val_loss"][1, 2:]).all() and np.isnan(res.history["val_loss"][2, 4:]).all()
    assert np.isfinite(res.history["val_loss"][0]).all()
    # a stopped member's parameters are those at its stop
    short = train(net, iris, "gd", {"eta": 0.1}, 30, 2, seed=2, theta0=theta0[1:2])
    np.testing.assert_allclose(res.theta[1], short.theta[0], rtol=1e-12, atol=1e-14)


def test_all_members_stopped_ends_the_run(iris):
    net = _mlp(iris)
    res = train(net, iris, "nag", {"eta": 0.01, "gamma": 0.9}, 16, 10, seed=0, theta0=net.init(0, population=2),
                callbacks=(lambda epoch, metrics, members: np.full(len(members), epoch == 3),))
    assert res.epochs_run.tolist() == [3, 3] and res.pruned.all()
    assert np.isnan(res.history["train_loss"][:, 3:]).all()


def test_train_leaves_theta0_alone(iris):
    net = _mlp(iris)
    theta0 = net.init(0, population=2)
    before = theta0.copy()
    res = train(net, iris, "adagrad", optim.hyperparameters("adagrad", eta=0.1), 16, 2, seed=0, theta0=theta0)
    np.testing.assert_array_equal(theta0, before)
    assert not np.allclose(res.theta, before)


def test_validate_off_records_no_validation(iris):
    net = _mlp(iris)
    res = train(net, iris, "gd", {"eta": 0.1}, 16, 2, seed=0, theta0=net.init(0), validate=False)
    assert np.isnan(res.history["val_loss"]).all() and np.isfinite(res.history["train_loss"]).all()


class _RecordingNet:
    """Wraps a network and records the first feature (a sample id) of every batch it is asked about."""

    def __init__(self, net):
        self.net, self.seen = net, []

    def __getattr__(self, name):
        return getattr(self.net, name)

    def loss_and_grad(self, theta, X, Y, out=None):
        self.seen.append(X[:, 0].astype(int).tolist())
        return self.net.loss_and_grad(theta, X, Y, out=out)


def _id_split(n=23):
    X = np.column_stack([np.arange(n), np.linspace(-1, 1, n)])
    Y = (np.arange(n) % 3 == 0).astype(float)[:, None]
    return Split("ids", "regression", X, Y, X, Y, X, Y)


def test_data_order_depends_on_the_seed_only(iris):
    """Same seed: the same order of samples whatever the optimizer and the batch size (paired comparisons)."""
    split = _id_split()
    orders = {}
    for name in ALL:
        for batch_size in (1, 4, 10):
            net = _RecordingNet(SigmoidNeuron(n_features=2, reduction="mean"))
            train(net, split, name, optim.hyperparameters(name), batch_size, 3, seed=7, theta0=net.init([0, 0], 0))
            assert len(net.seen) == 3 * math.ceil(23 / batch_size)
            flat = [i for batch in net.seen for i in batch]
            for e in range(3):  # every sample once per epoch
                assert sorted(flat[23 * e:23 * (e + 1)]) == list(range(23))
            orders[name, batch_size] = flat
    first = next(iter(orders.values()))
    assert all(order == first for order in orders.values())
    net = _RecordingNet(SigmoidNeuron(n_features=2, reduction="mean"))
    train(net, split, "gd", {"eta": 0.1}, 4, 3, seed=8, theta0=net.init([0, 0], 0))
    assert [i for batch in net.seen for i in batch] != first
    net = _RecordingNet(SigmoidNeuron(n_features=2, reduction="mean"))  # shuffle off: the given order
    train(net, split, "gd", {"eta": 0.1}, 10, 1, seed=8, theta0=net.init([0, 0], 0), shuffle=False)
    assert net.seen == [list(range(10)), list(range(10, 20)), [20, 21, 22]]


@pytest.mark.parametrize("net", [SigmoidNeuron(n_features=2, reduction="sum"),
                                 SigmoidNeuron(n_features=2, reduction="mean"),
                                 MLP((2, 3, 1), task="regression")], ids=["neuron-sum", "neuron-mean", "mlp"])
def test_train_loss_with_frozen_parameters_is_the_training_loss_whatever_the_batch_size(net):
    """With eta = 0 nothing moves, so the epoch's train_loss must be the network's loss on the whole training set,
    in the network's own reduction, for every batch size (else batch modes could not be compared)."""
    split = _id_split()
    theta0 = net.init([0.3, -0.2], 0.1) if isinstance(net, SigmoidNeuron) else net.init(0)
    expected = net.loss(theta0, split.X_train, split.Y_train)
    for batch_size in ("full", 1, 4, 10):
        res = train(net, split, "gd", {"eta": 0.0}, batch_size, 2, seed=0, theta0=theta0)
        np.testing.assert_allclose(res.history["train_loss"][:, 0], expected, rtol=1e-12,
                                   err_msg=f"batch size {batch_size}")
        np.testing.assert_allclose(res.history["val_loss"][:, -1], expected, rtol=1e-12)


@pytest.mark.parametrize("engine", ["numpy", "auto"])
def test_a_run_that_diverges_is_recorded_without_a_warning(engine):
    """Divergence is an outcome (issue 20): numpy's overflow warnings of a blown-up run are caught where the
    trainer records it, on the readable path and the compiled one, and scoring the blown-up weights warns neither."""
    import warnings

    split = load("iris", 0, 0.2, 0.2)
    net = MLP((split.n_features, 8, split.Y_train.shape[1]), "relu", split.task)
    theta0 = net.init(0, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = train(net, split, "gd", {"eta": np.array([1e12, 1e15])}, 32, 5, 0, theta0, engine=engine,
                             watch=("test",))
        assert result.diverged.all()
        net.evaluate(result.theta, split.X_test, split.Y_test)
