"""The compiled fast path (study.core.kernels) against the readable numpy path (study.core.optim, study.core.nn,
study.core.train).

The readable path is the reference. The update rules are the same functions on both paths, so they must agree to
the bit: on arrays, element by element on plain floats, and compiled into the fused loop. Whole training runs agree
to 1e-12: the matrix products sum in another order (loops or another BLAS call on the compiled side) and exp, log,
tanh are other implementations (numba's libm, numpy's SIMD), so the last bits of a gradient differ and a run
carries them along. Hyperparameters are the usual ones, so a run is not chaotic and those bits stay small.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from study.core import kernels, nn, optim
from study.core.data import Split, load
from study.core.train import train

ALL = sorted(optim.OPTIMIZERS)
RTOL, ATOL = 1e-12, 1e-14


# --- 1. The rules: one function, three ways of running it -----------------------------------------------------------
def _random_case(rng, name, k, p):
    """Gradients, states and per-member hyperparameters over many orders of magnitude, with zeros among them."""
    scale = 10.0 ** rng.uniform(-12, 3, (k, p))
    g = rng.standard_normal((k, p)) * scale
    g[rng.random((k, p)) < 0.05] = 0.0
    m = rng.standard_normal((k, p)) * 10.0 ** rng.uniform(-8, 1, (k, p))
    v = rng.random((k, p)) * 10.0 ** rng.uniform(-12, 2, (k, p))
    ranges = {"eta": (-5, 0), "gamma": (-3, -0.05), "beta": (-4, -0.05), "beta1": (-3, -0.05), "beta2": (-4, -0.5),
              "eps": (-10, -1)}
    hyper = {}
    for key in optim.OPTIMIZERS[name].defaults:
        lo, hi = ranges[key]
        draw = 10.0 ** rng.uniform(lo, hi, k)
        hyper[key] = draw if key in ("eta", "eps") else 1.0 - draw  # momentum-like knobs sit just below 1
    return g, m, v, hyper


def _state(name, m, v, count):
    state = optim.OPTIMIZERS[name].init({"theta": m})
    fields = {"m": {"theta": m.copy()}, "v": {"theta": v.copy()}, "count": count}
    return state._replace(**{f: fields[f] for f in state._fields})


def _prepared(optimizer: str, steps: int = 1, epochs: int = 1) -> kernels.CompiledEpochs:
    """A training call prepared as train.train prepares it, on a tiny network and ``steps`` samples (batch 1)."""
    return kernels.CompiledEpochs(nn.MLP((1, 1, 2)), optimizer, np.zeros((steps, 1)), np.eye(2)[np.zeros(steps, int)],
                                  batch=1, epochs=epochs)


# Called directly, the rules' dispatch compiles outside CompiledEpochs.epoch, which silences this warning (see
# kernels._quiet_compile): numba's failed attempt to unify the compiled rules into one function type.
QUIET = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaExperimentalFeatureWarning")


def _compiled_update(name, g, theta, state, hyper, k):
    """The kernel's fused update (kernels._apply_rule), member by member, on copies."""
    ce = _prepared(name)
    theta = theta.copy()
    state = optim.select_members(state, np.arange(k))  # copies of the state arrays
    arrays = ce.state_arrays(state)
    H = ce.hyper_matrix(hyper, k)
    opt = optim.OPTIMIZERS[name]
    terms = np.empty((k, 0))
    if opt.step_terms:  # this step's terms, as Optimizer.update computes them
        per_member = {h: np.asarray(hyper[h], float).reshape(k, 1) for h in opt.hyper}
        terms = np.ascontiguousarray(np.concatenate(opt.step_terms(state.count + 1, per_member), axis=1))
    for j in range(k):
        kernels._apply_rule(ce.rule, g[j], theta[j], tuple(a[j] for a in arrays), H[j], terms[j])
    return theta, state


@QUIET
@pytest.mark.parametrize("name", ALL)
def test_a_rule_on_arrays_equals_the_rule_per_element_and_compiled(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    opt = optim.OPTIMIZERS[name]
    for case in range(40):
        k, p = 3, int(rng.integers(1, 300))
        g, m, v, hyper = _random_case(rng, name, k, p)
        theta = rng.standard_normal((k, p))
        count = int(rng.choice([0, 1, 2, int(rng.integers(3, 100_000))]))
        state = _state(name, m, v, count)

        updates, new_state = opt.update({"theta": g}, state, hyper)  # numpy, whole arrays: the reference
        expected = optim.apply_updates({"theta": theta}, updates)["theta"]

        # plain Python floats, one element at a time, the arguments in the order the registry declares
        for j in range(k):
            h = {key: float(val[j]) for key, val in hyper.items()}
            terms = [float(np.ravel(x)[0]) for x in opt.step_terms(count + 1, h)] if opt.step_terms else []
            for i in range(p):
                states = {"m": float(m[j, i]), "v": float(v[j, i])}
                out = opt.rule(float(g[j, i]), *(states[f] for f in opt.state), *(h[n] for n in opt.hyper), *terms)
                assert len(out) == 1 + len(opt.state)
                assert float(theta[j, i]) + out[0] == expected[j, i] or np.isnan(expected[j, i])
                for f, value in zip(opt.state, out[1:]):
                    assert value == getattr(new_state, f)["theta"][j, i]

        # compiled into the kernel's fused loop
        got, got_state = _compiled_update(name, g, theta, state, hyper, k)
        np.testing.assert_array_equal(got, expected)
        for field in set(new_state._fields) - {"count"}:
            np.testing.assert_array_equal(getattr(got_state, field)["theta"], getattr(new_state, field)["theta"])


@QUIET
def test_nag_look_ahead_compiled_equals_numpy():
    rng = np.random.default_rng(7)
    nag = optim.OPTIMIZERS["nag"]
    ce = _prepared("nag")
    for _ in range(20):
        k, p = 3, int(rng.integers(1, 500))
        w, v = rng.standard_normal((k, p)), rng.standard_normal((k, p)) * 10.0 ** rng.uniform(-8, 2, (k, p))
        hyper = {"eta": np.full(k, 0.1), "gamma": 1.0 - 10.0 ** rng.uniform(-3, -0.05, k)}
        state = nag.init({"theta": w})._replace(v={"theta": v})
        expected = nag.lookahead({"theta": w}, state, hyper)["theta"]
        np.testing.assert_array_equal(expected, w - hyper["gamma"][:, None] * v)
        H, arrays = ce.hyper_matrix(hyper, k), ce.state_arrays(state)
        for j in range(k):
            out = np.empty(p)
            kernels._look_ahead(ce.rule, w[j], tuple(a[j] for a in arrays), H[j], out)
            np.testing.assert_array_equal(out, expected[j])


def test_adam_corrections_of_an_epoch_equal_those_of_each_step():
    """The kernel gets many steps' 1 - beta^t at once; they must be the bits the readable path computes per step
    (numpy's pow is an exact square for a lone exponent 2 but a vectorised pow otherwise: layout matters)."""
    rng = np.random.default_rng(3)
    for k in (1, 3, 17):
        hyper = {"eta": np.full(k, 1e-3), "beta1": 1.0 - 10.0 ** rng.uniform(-3, -0.05, k),
                 "beta2": 1.0 - 10.0 ** rng.uniform(-5, -0.5, k), "eps": np.full(k, 1e-8)}
        steps = int(rng.integers(1, 40))
        ce = _prepared("adam", steps, epochs=200_000 // steps + 3)
        assert ce.steps == steps
        for count in (0, 1, 2, 999, 123_456, 123_456 + 2 * ce.steps):
            C, c0 = ce.step_terms(count, hyper, k)
            assert C.flags.c_contiguous and C.shape[0] == k and C.shape[1] >= c0 + ce.steps
            for s in range(ce.steps):
                c1, c2 = optim.adam_corrections(count + s + 1, hyper["beta1"].reshape(k, 1),
                                                hyper["beta2"].reshape(k, 1))  # as Optimizer.update shapes them
                np.testing.assert_array_equal(C[:, c0 + s, 0], c1[:, 0])
                np.testing.assert_array_equal(C[:, c0 + s, 1], c2[:, 0])


# --- 2. Whole runs: the compiled path equals the readable one ---------------------------------------------------------
@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 5))
    Y = np.column_stack([np.sin(X[:, 0]) + X[:, 1], X[:, 2] * X[:, 3]])  # two outputs
    regression = Split("two_outputs", "regression", X[:60], Y[:60], X[60:80], Y[60:80], X[80:], Y[80:])
    return {"classification": load("iris", 0), "regression": regression}


def _hyper(name, k):
    """The usual hyperparameters; member 1 with twice the learning rate; member 2 diverging at once."""
    defaults = optim.OPTIMIZERS[name].defaults
    hyper = {key: np.full(k, value) for key, value in defaults.items()}
    if k == 3:
        hyper["eta"][1] *= 2.0
        hyper["eta"][2] = 1e300
    return hyper


def _stop_member_1_after_epoch_1(epoch, metrics, members):
    return (members == 1) & (epoch == 1)


def _assert_runs_equal(fast, slow, rtol=RTOL, atol=ATOL):
    np.testing.assert_array_equal(fast.diverged, slow.diverged)
    np.testing.assert_array_equal(fast.pruned, slow.pruned)
    np.testing.assert_array_equal(fast.epochs_run, slow.epochs_run)
    np.testing.assert_allclose(fast.initial_val_loss, slow.initial_val_loss, rtol=rtol)
    tame = ~slow.diverged  # a diverged member's numbers are overflow: only its fate is compared
    np.testing.assert_allclose(fast.theta[tame], slow.theta[tame], rtol=rtol, atol=atol)
    for metric, values in slow.history.items():
        if metric == "seconds":
            continue
        np.testing.assert_allclose(fast.history[metric][tame], values[tame], rtol=rtol, atol=atol, err_msg=metric)
        np.testing.assert_array_equal(np.isnan(fast.history[metric]), np.isnan(values), err_msg=metric)


CASES = list(itertools.product(ALL, ["full", 32, 7, 1], ["relu", "tanh", "sigmoid"], ["classification", "regression"],
                               [1, 3]))


@pytest.mark.parametrize("name, batch, activation, task, k", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_the_compiled_path_equals_the_readable_path(name, batch, activation, task, k, splits):
    """Three epochs; with K = 3 member 1 is stopped by a callback after epoch 1 and member 2 diverges. One hidden
    layer for K = 1, two for K = 3."""
    split = splits[task]
    hidden = (6,) if k == 1 else (5, 4)
    net = nn.MLP((split.n_features, *hidden, split.n_outputs), activation, task)
    theta0 = net.init(1, population=k)
    callbacks = (_stop_member_1_after_epoch_1,) if k == 3 else ()
    runs = {engine: train(net, split, name, _hyper(name, k), batch, 3, seed=4, theta0=theta0, callbacks=callbacks,
                          engine=engine) for engine in ("compiled", "numpy")}
    _assert_runs_equal(runs["compiled"], runs["numpy"])
    if k == 3:
        assert runs["numpy"].diverged.tolist() == [False, False, True]
        assert runs["numpy"].pruned.tolist() == [False, True, False]
        assert runs["numpy"].epochs_run.tolist()[:2] == [3, 1]


@pytest.mark.parametrize("name", ALL)
def test_a_member_of_a_compiled_population_equals_its_run_alone_bitwise(name, splits):
    """Members never meet in the kernel: each one's numbers are those of the same network trained alone."""
    split = splits["classification"]
    net = nn.MLP((split.n_features, 8, split.n_outputs), "relu")
    k = 3
    hyper = {key: np.full(k, value) for key, value in optim.OPTIMIZERS[name].defaults.items()}
    hyper["eta"] *= [1.0, 2.0, 0.5]
    theta0 = net.init(2, population=k)
    for batch in ("full", 7, 1):
        pop = train(net, split, name, hyper, batch, 3, seed=1, theta0=theta0)
        for j in range(k):
            alone = train(net, split, name, {key: v[j] for key, v in hyper.items()}, batch, 3, seed=1,
                          theta0=theta0[j:j + 1])
            np.testing.assert_array_equal(pop.theta[j], alone.theta[0])
            for metric in ("train_loss", "val_loss", "val_accuracy", "grad_norm"):
                np.testing.assert_array_equal(pop.history[metric][j], alone.history[metric][0])


@pytest.mark.parametrize("hidden", [(), (1,), (7, 6, 5)], ids=["no-hidden-layer", "one-unit", "three-layers"])
def test_other_depths_and_widths(hidden, splits):
    split = splits["classification"]
    net = nn.MLP((split.n_features, *hidden, split.n_outputs), "tanh")
    theta0 = net.init(0, population=2)
    hyper = {"eta": np.array([0.001, 0.002]), "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    for batch in (1, 40, "full"):
        runs = [train(net, split, "adam", hyper, batch, 2, seed=3, theta0=theta0, engine=e)
                for e in ("compiled", "numpy")]
        _assert_runs_equal(*runs)


# --- 3. Which path runs -----------------------------------------------------------------------------------------------
def test_the_readable_path_serves_what_the_kernel_does_not(splits):
    split = splits["regression"]
    neuron = nn.SigmoidNeuron(n_features=split.n_features, reduction="mean")
    with pytest.raises(ValueError, match="compiled path"):
        train(neuron, split, "gd", {"eta": 0.1}, 8, 1, seed=0, theta0=neuron.init(np.zeros(5), 0.0),
              engine="compiled")
    net = nn.MLP((split.n_features, 4, split.n_outputs), task="regression")
    res = train(net, split, "momentum", optim.hyperparameters("momentum"), 16, 2, seed=0, theta0=net.init(0),
                record_steps=True)  # a record of every step: the readable path
    assert res.steps.update.shape[1] == 2 * 4
    np.testing.assert_array_equal(res.steps.theta[:, -1], res.theta)
    with pytest.raises(ValueError, match="engine"):
        train(net, split, "gd", {"eta": 0.1}, 8, 1, seed=0, theta0=net.init(0), engine="fast")


def test_the_kernel_takes_every_optimizer_of_the_registry():
    """No optimizer falls back to the readable path for want of a kernel, whatever its number of state arrays."""
    assert set(kernels.RULES) == set(optim.OPTIMIZERS)
    net = nn.MLP((4, 3, 2))
    assert all(kernels.supports(net, name) for name in optim.OPTIMIZERS)
    assert {len(o.state) for o in optim.OPTIMIZERS.values()} >= {0, 1, 2}


def test_two_entries_sharing_a_rule_must_declare_its_arguments_alike(monkeypatch):
    """momentum and nag share momentum_rule; an entry reading the same rule's gamma as a per-step term would get
    the other entry's generated loop (gamma read from H, not C): refused, not run with the wrong numbers."""
    assert kernels._declarations()[optim.momentum_rule].name == "momentum"
    momentum = optim.OPTIMIZERS["momentum"]
    odd = optim.Optimizer("odd", "Odd", "#000000", False, optim.momentum_rule, ("v",), momentum.hyperparameters[:1],
                          terms=("gamma",), step_terms=lambda t, hyper: (0.9 + 0.0 * t,))
    monkeypatch.setitem(optim.OPTIMIZERS, "odd", odd)
    with pytest.raises(TypeError, match="momentum and odd share momentum_rule"):
        kernels._declarations()


def test_an_optimizer_without_a_compiled_rule_trains_on_the_readable_path(splits, monkeypatch):
    """An optimizer the kernel cannot take (here: gd taken out of RULES) trains on the readable path, the same bits."""
    assert set(kernels.RULES) <= set(optim.OPTIMIZERS)
    split = splits["classification"]
    net = nn.MLP((split.n_features, 5, split.n_outputs))
    reference = train(net, split, "gd", {"eta": 0.1}, 16, 2, seed=0, theta0=net.init(0), engine="numpy")
    monkeypatch.delitem(kernels.RULES, "gd")
    auto = train(net, split, "gd", {"eta": 0.1}, 16, 2, seed=0, theta0=net.init(0))
    np.testing.assert_array_equal(auto.theta, reference.theta)  # bitwise: the very same numpy path
    with pytest.raises(ValueError, match="compiled path"):
        train(net, split, "gd", {"eta": 0.1}, 16, 2, seed=0, theta0=net.init(0), engine="compiled")


_AMSGRAD = '''

def amsgrad_rule(g, m, v, v_max, eta, beta1, beta2, eps):
    """AMSGrad (Reddi et al. 2018, Algorithm 2): Adam's moments, the step divided by the largest second moment so
    far, so that a parameter's step size never grows back."""
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    v_max = np.maximum(v_max, v)
    return -eta / (np.sqrt(v_max) + eps) * m, m, v, v_max


OPTIMIZERS["amsgrad"] = Optimizer(
    "amsgrad", "AMSGrad", "#9467bd", True, amsgrad_rule, ("m", "v", "v_max"),
    (hp.learning_rate(0.001, 1e-5, 3.0), hp.averaging("beta1", "β1", "first-moment decay", 0.9, 1e-5),
     hp.averaging("beta2", "β2", "second-moment decay", 0.999, 1e-6), hp.epsilon()))
'''

_TRAIN_BOTH = """
import numpy as np
from study.core import kernels, nn, optim
from study.core.data import load
from study.core.train import train
assert set(kernels.RULES) == set(optim.OPTIMIZERS), kernels.RULES
split = load("iris", 0)
net = nn.MLP((split.n_features, 6, split.n_outputs))
assert kernels.supports(net, "amsgrad")

# one step of the rule, compiled into the kernel's update loop, against numpy's: bitwise
rng = np.random.default_rng(0)
k, p = 3, 257
opt = optim.OPTIMIZERS["amsgrad"]
hyper = optim.hyperparameters("amsgrad", eta=np.array([1e-3, 1e-2, 1e-1]))
theta = rng.standard_normal((k, p))
state = opt.init({"theta": theta})
for name in opt.state:
    getattr(state, name)["theta"][:] = rng.random((k, p)) * 10.0 ** rng.uniform(-8, 1, (k, p))
g = rng.standard_normal((k, p)) * 10.0 ** rng.uniform(-6, 2, (k, p))
updates, expected = opt.update({"theta": g}, state, hyper)
ce = kernels.CompiledEpochs(net, "amsgrad", split.X_train, split.Y_train, batch=16, epochs=1)
arrays, H = ce.state_arrays(state), ce.hyper_matrix(hyper, k)
got = theta.copy()
for j in range(k):
    kernels._apply_rule(ce.rule, g[j], got[j], tuple(a[j] for a in arrays), H[j], np.empty(0))
np.testing.assert_array_equal(got, theta + updates["theta"])
for name in opt.state:
    np.testing.assert_array_equal(getattr(state, name)["theta"], getattr(expected, name)["theta"])

runs = {engine: train(net, split, "amsgrad", hyper, 16, 5, seed=0, theta0=net.init(0, k), engine=engine)
        for engine in ("compiled", "numpy")}
gap = np.abs(runs["compiled"].theta - runs["numpy"].theta).max()
moved = np.abs(runs["numpy"].theta - net.init(0, k)).max()
print(repr(float(gap)), repr(float(moved)))
"""


def test_a_seventh_optimizer_with_three_state_arrays_is_its_registry_entry_and_trains_compiled(tmp_path):
    """Adding AMSGrad (m, v and v_max: three state arrays) to study/core/optim.py, a rule and a registry entry and
    nothing in the kernels, is enough for the compiled path to train it, as the readable path does: its rule to the
    bit, a whole run to 1e-12."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    tree = tmp_path / "tree"
    shutil.copytree(Path(kernels.__file__).parents[1], tree / "study",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    rules = tree / "study" / "core" / "optim.py"
    rules.write_text(rules.read_text() + _AMSGRAD)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _TRAIN_BOTH], env=env, cwd=tree, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    gap, moved = map(float, out.stdout.split())
    assert moved > 1e-2, "AMSGrad did not train"
    assert gap <= 1e-12, f"compiled and readable paths differ by {gap}"
