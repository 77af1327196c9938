"""Small networks written out by hand: the lecture's sigmoid neuron and a multilayer perceptron.

All parameters of a network live in one flat buffer ``theta`` of shape (K, P): K networks (the population axis)
of P parameters each. ``net.unpack(theta)`` gives named views into it (``w``, ``b`` for the neuron; ``W1``,
``b1``, ... for the MLP), so the optimizers can treat the whole network as one array and the gradient is written
into one buffer. Inputs X (n, d) are shared by all K members; targets Y are 2-D (one-hot for classification).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

# name -> (activation, derivative expressed through the activation's output a)
ACTIVATIONS = {
    "sigmoid": (expit, lambda a: a * (1.0 - a)),
    "tanh": (np.tanh, lambda a: 1.0 - a * a),
    "relu": (lambda z: np.maximum(z, 0.0), lambda a: (a > 0.0).astype(a.dtype)),
}
# He for rectifiers, Xavier (Glorot) for the saturating units (He et al. 2015; Glorot & Bengio 2010)
DEFAULT_INIT = {"relu": "he", "sigmoid": "xavier", "tanh": "xavier"}


@functools.lru_cache(maxsize=None)
def _blocks(layout) -> tuple[tuple[str, int, int, tuple[int, ...]], ...]:
    """(name, start, stop, shape) of every block of a layout, worked out once per layout, not once per unpack."""
    blocks, offset = [], 0
    for name, shape in layout:
        size = math.prod(shape)
        blocks.append((name, offset, offset + size, tuple(shape)))
        offset += size
    return tuple(blocks)


class _FlatNet:
    """Parameter bookkeeping shared by the networks: a layout of named blocks inside one flat vector."""

    layout: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def n_params(self) -> int:
        return _blocks(self.layout)[-1][2]

    def unpack(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Named views (K, *shape) into theta (K, P); writing to a view writes to theta."""
        k = theta.shape[0]
        return {name: theta[:, start:stop].reshape((k,) + shape) for name, start, stop, shape in _blocks(self.layout)}

    def pack(self, params: dict[str, np.ndarray]) -> np.ndarray:
        k = next(iter(params.values())).shape[0]
        return np.concatenate([np.reshape(params[name], (k, -1)) for name, _ in self.layout], axis=1)


@dataclass(frozen=True)
class SigmoidNeuron(_FlatNet):
    """The lecture's f(w, b, x) = 1 / (1 + exp(-(w.x + b))) with the error sum_i 0.5 (f(x_i) - y_i)^2.

    ``reduction="sum"`` is the lecture's error and gradient (summed over the points of a batch); "mean" divides
    both by the batch size.
    """

    n_features: int = 1
    reduction: str = "sum"
    task: str = "regression"

    @property
    def layout(self):
        return (("w", (self.n_features,)), ("b", ()))

    def forward(self, theta, X):
        p = self.unpack(theta)
        return expit(X @ p["w"].T + p["b"]).T  # (K, n)

    def loss(self, theta, X, Y):
        err = 0.5 * (self.forward(theta, X) - Y[:, 0]) ** 2
        return err.sum(axis=1) if self.reduction == "sum" else err.mean(axis=1)

    def loss_and_grad(self, theta, X, Y, out: np.ndarray | None = None):
        fx = self.forward(theta, X)
        r = fx - Y[:, 0]
        scale = 1.0 if self.reduction == "sum" else 1.0 / X.shape[0]
        delta = r * fx * (1.0 - fx) * scale  # dE/d(w.x + b) per point: (f - y) f (1 - f)
        grad = np.empty_like(theta) if out is None else out
        grad[:, :-1] = delta @ X
        grad[:, -1] = delta.sum(axis=1)
        return 0.5 * (r * r).sum(axis=1) * scale, grad

    def evaluate(self, theta, X, Y):
        return self.loss(theta, X, Y), None

    def init(self, w, b, population: int = 1):
        """The lecture starts from a given point (w, b), not a random one."""
        theta = np.concatenate([np.ravel(np.asarray(w, float)), [float(b)]])
        return np.tile(theta, (population, 1))


@dataclass(frozen=True)
class MLP(_FlatNet):
    """A multilayer perceptron: ``sizes = (inputs, hidden..., outputs)``.

    classification: softmax output, mean cross-entropy over the batch;
    regression: linear output, squared error 0.5 * mean((y_hat - y)^2) (scikit-learn's convention).
    """

    sizes: tuple[int, ...]
    activation: str = "relu"
    task: str = "classification"
    init_scheme: str | None = None  # None: DEFAULT_INIT[activation]
    layout: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {sorted(ACTIVATIONS)}")
        layout = []
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            layout += [(f"W{i}", (fan_in, fan_out)), (f"b{i}", (fan_out,))]
        object.__setattr__(self, "layout", tuple(layout))

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def init(self, seed, population: int = 1) -> np.ndarray:
        """Weights from ``seed`` (Xavier uniform or He normal), biases zero; every member starts the same."""
        rng = np.random.default_rng(seed)
        scheme = self.init_scheme or DEFAULT_INIT[self.activation]
        theta = np.zeros((1, self.n_params))
        p = self.unpack(theta)
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            if scheme == "he":
                p[f"W{i}"][0] = rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out))
            elif scheme == "xavier":
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                p[f"W{i}"][0] = rng.uniform(-bound, bound, (fan_in, fan_out))
            else:
                raise ValueError(f"unknown init scheme {scheme!r}; choose 'he' or 'xavier'")
        return np.repeat(theta, population, axis=0)

    def _forward(self, p, X):
        """Activations of every layer, input first; the last entry holds the output pre-activation (logits)."""
        act = ACTIVATIONS[self.activation][0]
        hs = [X]
        for i in range(1, self.n_layers + 1):
            z = hs[-1] @ p[f"W{i}"] + p[f"b{i}"][:, None, :]
            hs.append(z if i == self.n_layers else act(z))
        return hs

    def _output_loss(self, z, Y):
        """Loss per member (K,) and its derivative with respect to the output pre-activation z (K, n, out)."""
        n = Y.shape[0]
        if self.task == "classification":
            z = z - z.max(axis=2, keepdims=True)  # log-softmax, stable for large logits
            log_p = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
            loss = -(log_p * Y).sum(axis=(1, 2)) / n
            return loss, (np.exp(log_p) - Y) / n  # d(mean CE)/dz = (softmax - onehot) / n
        r = z - Y
        loss = 0.5 * (r * r).sum(axis=(1, 2)) / Y.size
        return loss, r / Y.size

    def predict(self, theta, X):
        """Class probabilities (classification) or outputs (regression), shape (K, n, out)."""
        z = self._forward(self.unpack(theta), X)[-1]
        if self.task == "classification":
            e = np.exp(z - z.max(axis=2, keepdims=True))
            return e / e.sum(axis=2, keepdims=True)
        return z

    def loss(self, theta, X, Y):
        return self._output_loss(self._forward(self.unpack(theta), X)[-1], Y)[0]

    def loss_and_grad(self, theta, X, Y, out: np.ndarray | None = None):
        """Backpropagation, layer by layer from the output, into the flat gradient buffer ``out`` (K, P)."""
        p = self.unpack(theta)
        grad = np.empty_like(theta) if out is None else out
        g = self.unpack(grad)
        hs = self._forward(p, X)
        loss, delta = self._output_loss(hs[-1], Y)  # delta = dL/dz of the current layer, (K, n, fan_out)
        d_act = ACTIVATIONS[self.activation][1]
        for i in range(self.n_layers, 0, -1):
            h_in = hs[i - 1]  # the layer's input: X (n, d) for the first layer, else (K, n, fan_in)
            # dL/dW = h_in^T delta, summed over the batch; dL/db = delta summed over the batch
            g[f"W{i}"][...] = np.swapaxes(h_in, -1, -2) @ delta
            g[f"b{i}"][...] = delta.sum(axis=1)
            if i > 1:  # chain rule into the previous layer: through W, then through the activation
                delta = (delta @ np.swapaxes(p[f"W{i}"], -1, -2)) * d_act(h_in)
        return loss, grad

    def evaluate(self, theta, X, Y):
        """Loss and accuracy (None for regression) per member, from one forward pass."""
        z = self._forward(self.unpack(theta), X)[-1]
        loss = self._output_loss(z, Y)[0]
        if self.task != "classification":
            return loss, None
        return loss, (z.argmax(axis=2) == Y.argmax(axis=1)).mean(axis=1)
