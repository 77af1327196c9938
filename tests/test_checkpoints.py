"""Checkpoints: validation and held-out scores at a grid of update counts, inside epochs too (issue 18 item 2)."""
from __future__ import annotations

import numpy as np
import pytest

from study.core import batches
from study.core.data import load
from study.core.nn import MLP
from study.core.train import checkpoint_grid, train

ADAM = {"eta": np.array([1e-2, 3e-2]), "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


@pytest.fixture(scope="module")
def moons():
    return load("moons", seed=10000)


def _net(split):
    return MLP((split.n_features, 8, split.n_outputs), "relu", split.task)


@pytest.mark.parametrize("per_epoch, epochs", [(1, 200), (12, 30), (360, 8), (1000, 3)])
def test_the_grid_holds_every_epoch_end_and_at_least_four_counts_per_decade(per_epoch, epochs):
    grid = checkpoint_grid(per_epoch, epochs, extra=(5, 10**9))
    total = per_epoch * epochs
    assert set(per_epoch * np.arange(1, epochs + 1)) <= set(grid.tolist())
    assert grid[0] >= 1 and grid[-1] == total and np.all(np.diff(grid) > 0) and 5 in grid
    for low in range(1, int(np.log10(total))):  # every whole decade inside the run
        inside = grid[(grid >= 10**low) & (grid < 10 ** (low + 1))]
        assert len(inside) >= 4, (low, inside)


@pytest.mark.parametrize("batch", ["full", "32", "1"])
def test_checkpoints_inside_epochs_are_the_readable_paths_and_leave_training_alone(batch, moons):
    net = _net(moons)
    per_epoch = batches.steps_per_epoch(moons.X_train.shape[0], batch)
    grid = checkpoint_grid(per_epoch, 3, extra=(7,))
    runs = {engine: train(net, moons, "adam", ADAM, batch, 3, 1, net.init(1, 2), watch=("test",), checkpoints=grid,
                          engine=engine) for engine in ("numpy", "compiled")}
    plain = train(net, moons, "adam", ADAM, batch, 3, 1, net.init(1, 2))
    ends = np.isin(grid, per_epoch * np.arange(1, 4))
    for engine, run in runs.items():
        assert run.checkpoints.updates.tolist() == grid.tolist()
        for name in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
            values = run.checkpoints.values[name]
            assert np.isfinite(values).all(), (engine, name)
            assert np.array_equal(values[:, ends], run.history[name]), (engine, name)  # epoch ends: the history's
    assert runs["compiled"].theta.tobytes() == plain.theta.tobytes()  # scoring in between changes nothing
    np.testing.assert_allclose(runs["numpy"].checkpoints.values["val_loss"],
                               runs["compiled"].checkpoints.values["val_loss"], rtol=1e-10, atol=1e-12)


def test_a_checkpoint_inside_an_epoch_scores_the_parameters_after_that_many_updates(moons):
    """A run cut at k updates by training for k updates alone (batch = the sample count of k batches, no shuffle):
    its validation loss is the checkpoint's at k."""
    net = _net(moons)
    n = moons.X_train.shape[0]
    size = 32
    grid = checkpoint_grid(batches.steps_per_epoch(n, size), 1)
    run = train(net, moons, "gd", {"eta": np.array([0.5])}, size, 1, 1, net.init(1, 1), checkpoints=grid,
                shuffle=False, engine="numpy")
    # the readable path, stopped by hand after 3 updates
    from study.core import optim
    opt, theta = optim.OPTIMIZERS["gd"], net.init(1, 1).copy()
    state = opt.init({"theta": theta})
    for step in range(3):
        Xb, Yb = moons.X_train[step * size:(step + 1) * size], moons.Y_train[step * size:(step + 1) * size]
        _, g = net.loss_and_grad(theta, Xb, Yb)
        updates, state = opt.update({"theta": g}, state, {"eta": np.array([0.5])})
        theta = theta + updates["theta"]
    expected = net.evaluate(theta, moons.X_val, moons.Y_val)[0]
    j = grid.tolist().index(3)
    np.testing.assert_allclose(run.checkpoints.values["val_loss"][:, j], expected, rtol=1e-12)


def test_a_stopped_member_has_no_checkpoints_after_it_stopped(moons):
    net = _net(moons)
    per_epoch = batches.steps_per_epoch(moons.X_train.shape[0], 32)
    grid = checkpoint_grid(per_epoch, 4)

    def stop_first(epoch, metrics, members):
        return (members == 0) & (epoch == 2)

    run = train(net, moons, "adam", ADAM, 32, 4, 1, net.init(1, 2), callbacks=(stop_first,), checkpoints=grid)
    values = run.checkpoints.values["val_loss"]
    assert np.isnan(values[0, grid > 2 * per_epoch]).all() and np.isfinite(values[0, grid <= 2 * per_epoch]).all()
    assert np.isfinite(values[1]).all()
