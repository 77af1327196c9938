"""The MLP's mathematics compiled: forward, softmax cross-entropy or squared error, backward, and the validation pass
(as study.core.nn.MLP, on its flat (K, P) layout); study.core.kernels trains with them."""
from __future__ import annotations

import numpy as np

from study.core.jit import jit, jit_inline, jit_products


@jit
def _add_bias_and_activate(z, bias, act):
    """In place: z + bias, then the activation of nn.ACTIVATIONS (act -1: none, the output layer's logits).
    relu as np.maximum(z, 0): a NaN stays NaN."""
    b, m = z.shape
    if act == 0:
        for r in range(b):
            for j in range(m):
                a = z[r, j] + bias[j]
                z[r, j] = 0.0 if a < 0.0 else a
    elif act == 1:
        for r in range(b):
            for j in range(m):
                z[r, j] = np.tanh(z[r, j] + bias[j])
    elif act == 2:
        for r in range(b):
            for j in range(m):
                z[r, j] = 1.0 / (1.0 + np.exp(-(z[r, j] + bias[j])))  # scipy's expit
    else:
        for r in range(b):
            for j in range(m):
                z[r, j] += bias[j]


@jit
def _times_derivative(d, a, act):
    """In place: d *= the activation's derivative, expressed through its output a (as nn.ACTIVATIONS)."""
    b, m = d.shape
    if act == 0:
        for r in range(b):
            for j in range(m):
                d[r, j] *= 1.0 if a[r, j] > 0.0 else 0.0
    elif act == 1:
        for r in range(b):
            for j in range(m):
                d[r, j] *= 1.0 - a[r, j] * a[r, j]
    else:
        for r in range(b):
            for j in range(m):
                d[r, j] *= a[r, j] * (1.0 - a[r, j])


@jit_products
def _matmul(a, w, out, small):
    """out = a @ w: loops for a few rows, BLAS beyond."""
    b, fan_in = a.shape
    fan_out = w.shape[1]
    if b > small:
        np.dot(a, w, out)
        return
    for r in range(b):
        x = a[r, 0]
        for j in range(fan_out):
            out[r, j] = x * w[0, j]
        for i in range(1, fan_in):
            x = a[r, i]
            for j in range(fan_out):
                out[r, j] += x * w[i, j]


@jit_products
def _matmul_wt(d, w, out, small):
    """out = d @ w.T (the chain rule through a layer's weights)."""
    b, fan_out = d.shape
    fan_in = w.shape[0]
    if b > small:
        np.dot(d, w.T, out)
        return
    for r in range(b):
        for i in range(fan_in):
            acc = 0.0
            for j in range(fan_out):
                acc += d[r, j] * w[i, j]
            out[r, i] = acc


@jit_products
def _matmul_at(a, d, out, small):
    """out = a.T @ d (a layer's weight gradient, summed over the batch)."""
    b, fan_in = a.shape
    fan_out = d.shape[1]
    if b > small:
        np.dot(a.T, d, out)
        return
    for i in range(fan_in):
        x = a[0, i]
        for j in range(fan_out):
            out[i, j] = x * d[0, j]
    for r in range(1, b):
        for i in range(fan_in):
            x = a[r, i]
            for j in range(fan_out):
                out[i, j] += x * d[r, j]


@jit_inline
def _layer_forward(h_in, weights, bias, out, act, small):
    """out = act(h_in @ weights + bias); act -1: none (the output layer's logits)."""
    _matmul(h_in, weights, out, small)
    _add_bias_and_activate(out, bias, act)


@jit_inline
def _layer_backward(h_in, d, weights, g_weights, g_bias, d_prev, act, small):
    """From d = dL/dz of a layer: dL/dW = h_in^T d and dL/db = d, summed over the batch; then, unless d_prev is
    empty (the first layer), the chain rule into the previous layer: d_prev = (d @ W^T) * act'(h_in)."""
    _matmul_at(h_in, d, g_weights, small)
    g_bias[:] = 0.0
    for r in range(d.shape[0]):  # row by row: contiguous, and each sum still runs over r in order
        for j in range(d.shape[1]):
            g_bias[j] += d[r, j]
    if d_prev.shape[1] > 0:
        _matmul_wt(d, weights, d_prev, small)
        _times_derivative(d_prev, h_in, act)


@jit
def forward(x, w, sizes, woff, boff, work, act, small):
    """Every layer's output for the batch x, each a C-contiguous (b, size) view into ``work`` (the last: logits)."""
    b = x.shape[0]
    layers = sizes.shape[0] - 1
    h = x
    offset = 0
    for layer in range(layers):
        fan_in, fan_out = sizes[layer], sizes[layer + 1]
        z = work[offset:offset + b * fan_out].reshape(b, fan_out)
        _layer_forward(h, w[woff[layer]:woff[layer] + fan_in * fan_out].reshape(fan_in, fan_out),
                       w[boff[layer]:boff[layer] + fan_out], z, act if layer < layers - 1 else -1, small)
        h = z
        offset += b * fan_out
    return offset - b * sizes[layers]  # where the logits start


@jit
def _output_loss(z, y, task):
    """The batch's mean loss; z becomes dL/dz in place (as nn.MLP._output_loss)."""
    b, c = z.shape
    loss = 0.0
    if task == 0:  # softmax cross-entropy
        for r in range(b):
            zmax = z[r, 0]
            for j in range(1, c):
                if z[r, j] > zmax:
                    zmax = z[r, j]
            se, zy, ys = 0.0, 0.0, 0.0
            for j in range(c):
                zs = z[r, j] - zmax  # shifted: stable for large logits
                zy += zs * y[r, j]
                ys += y[r, j]
                z[r, j] = np.exp(zs)  # one exp per logit
                se += z[r, j]
            loss -= zy - np.log(se) * ys  # -sum_j y_j log p_j, log p_j = zs_j - log(se)
            for j in range(c):
                z[r, j] = (z[r, j] / se - y[r, j]) / b  # d(mean CE)/dz = (softmax - onehot) / b
        return loss / b
    size = b * c  # 0.5 mean squared error over all outputs
    for r in range(b):
        for j in range(c):
            e = z[r, j] - y[r, j]
            loss += e * e
            z[r, j] = e / size
    return 0.5 * loss / size


@jit
def loss_and_grad(x, y, w, g, sizes, woff, boff, work, delta, act, task, small):
    """Backpropagation for one member and one batch, any depth: the mean loss; the gradient into g (P,)."""
    b = x.shape[0]
    layers = sizes.shape[0] - 1
    logits = forward(x, w, sizes, woff, boff, work, act, small)
    d = work[logits:logits + b * sizes[layers]].reshape(b, sizes[layers])
    loss = _output_loss(d, y, task)  # d = dL/dz of the current layer
    offset = logits
    spare = 0  # which half of `delta` receives the previous layer's dL/dz
    half = delta.shape[0] // 2
    for layer in range(layers - 1, -1, -1):
        fan_in, fan_out = sizes[layer], sizes[layer + 1]
        if layer > 0:
            offset -= b * fan_in
            h_in = work[offset:offset + b * fan_in].reshape(b, fan_in)
        else:
            h_in = x
        n_prev = fan_in if layer > 0 else 0  # no dL/dz for the inputs
        d_prev = delta[spare * half:spare * half + b * n_prev].reshape(b, n_prev)
        _layer_backward(h_in, d, w[woff[layer]:woff[layer] + fan_in * fan_out].reshape(fan_in, fan_out),
                        g[woff[layer]:woff[layer] + fan_in * fan_out].reshape(fan_in, fan_out),
                        g[boff[layer]:boff[layer] + fan_out], d_prev, act, small)
        d = d_prev
        spare = 1 - spare
    return loss


@jit_inline
def loss_and_grad_one_hidden(x, y, W1, b1, W2, b2, gW1, gb1, gW2, gb2, h, z, dh, act, task, small):
    """The same for the sweep's network, one hidden layer, with every view made by the caller once per epoch
    (numba counts references to each view it makes; per step that cost as much as a small network's arithmetic)."""
    _layer_forward(x, W1, b1, h, act, small)
    _layer_forward(h, W2, b2, z, -1, small)
    loss = _output_loss(z, y, task)  # z becomes dL/dz
    _layer_backward(h, z, W2, gW2, gb2, dh, act, small)
    _layer_backward(x, dh, W1, gW1, gb1, z[:0].reshape(x.shape[0], 0), act, small)  # no dL/dz for the inputs
    return loss


@jit
def evaluate(X, Y, labels, theta, sizes, woff, boff, act, task, small, loss_out, acc_out):
    """Every member's mean loss and (classification) accuracy on (X, Y): the validation pass (as nn.MLP.evaluate)."""
    n = X.shape[0]
    layers = sizes.shape[0] - 1
    c = sizes[layers]
    work = np.empty(n * (sizes[1:].sum()))
    for k in range(theta.shape[0]):
        logits = forward(X, theta[k], sizes, woff, boff, work, act, small)
        z = work[logits:logits + n * c].reshape(n, c)
        loss = 0.0
        hits = 0
        for r in range(n):
            if task == 0:
                zmax, arg = z[r, 0], 0  # argmax as numpy's: the first largest, or the first NaN
                if zmax == zmax:
                    for j in range(1, c):
                        if z[r, j] != z[r, j]:
                            zmax, arg = z[r, j], j
                            break
                        if z[r, j] > zmax:
                            zmax, arg = z[r, j], j
                hits += arg == labels[r]
                se, zy, ys = 0.0, 0.0, 0.0
                for j in range(c):
                    zs = z[r, j] - zmax
                    zy += zs * Y[r, j]
                    ys += Y[r, j]
                    se += np.exp(zs)
                loss -= zy - np.log(se) * ys
            else:
                for j in range(c):
                    e = z[r, j] - Y[r, j]
                    loss += e * e
        acc_out[k] = hits / n
        loss_out[k] = loss / n if task == 0 else 0.5 * loss / (n * c)
