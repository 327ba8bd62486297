"""The JAX side shared by the network benchmarks (bench/digits.py,
bench/cifar.py): the paper's scale-invariant VGG written from its
description (App. Q.1, Fig. 16) and a timer. crosscheck/nn.py keeps its own
copy on purpose: it is a test oracle, these are benchmarks."""

import time

import numpy as np
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402


def bn(z, axes):
    """BN without affine, batch statistics, biased variance, eps = 0."""
    mu = z.mean(axes, keepdims=True)
    var = ((z - mu) ** 2).mean(axes, keepdims=True)
    return (z - mu) / jnp.sqrt(var)


def swish(h):
    return h * jax.nn.sigmoid(h)


def scaled(c, width):
    """eosflow-nn's channel multiplier: round to nearest, at least 1."""
    return max(1, int(np.floor(c * width + 0.5)))


def vgg_loss(items, x, y, width=1.0, gamma=0.3 * np.log(91.0), classes=10):
    """Mean cross-entropy of the SI VGG on images x (n, c, h, w): per conv
    item a 3x3 convolution (padding 1, no bias) -> BN over (n, h, w) ->
    Swish, "M" a 2x2 mean pool; then flatten -> linear (no bias) -> BN with
    fixed gamma. w is eosflow-nn's flat layout (kernels, then the linear)."""

    def loss(w):
        h, off, c = x, 0, x.shape[1]
        for it in items:
            if it == "M":
                n, ch, hh, ww = h.shape
                h = h.reshape(n, ch, hh // 2, 2, ww // 2, 2).mean((3, 5))
                continue
            o = scaled(int(it), width)
            k = w[off : off + o * c * 9].reshape(o, c, 3, 3)
            off += o * c * 9
            h = jax.lax.conv_general_dilated(h, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
            h = swish(bn(h, (0, 2, 3)))
            c = o
        h = h.reshape(h.shape[0], -1)
        z = gamma * bn(h @ w[off:].reshape(classes, h.shape[1]).T, 0)
        return jnp.mean(jax.nn.logsumexp(z, 1) - z[jnp.arange(len(y)), y])

    return loss


def median_time(f, n):
    """Median wall time of n calls of f (results awaited)."""
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(f())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))
