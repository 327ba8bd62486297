"""HVPs and gradients of a JAX loss for eosflow, in float64 or not at all.

>>> import jax, jax.numpy as jnp, numpy as np, eosflow.jax
>>> jax.config.update("jax_enable_x64", True)
>>> hvp = eosflow.jax.hvp(lambda w: jnp.sum(w ** 4))
>>> hvp(np.ones(2), np.array([1.0, 0.0]))
array([12.,  0.])
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def _require_x64():
    import jax

    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "eosflow computes in float64 but JAX is in 32-bit mode: call "
            "jax.config.update('jax_enable_x64', True) at the start of the program (before creating arrays), "
            "or set JAX_ENABLE_X64=1"
        )
    return jax


def hvp(loss: Callable[[Any], Any]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``f(w, v) = ∇²L(w)·v`` of a JAX loss of a flat parameter vector, as
    forward-over-reverse ``jax.jvp(jax.grad(loss), (w,), (v,))``, jitted;
    numpy float64 in and out. Refuses to work unless 64-bit mode is on."""
    jax = _require_x64()
    f = jax.jit(lambda w, v: jax.jvp(jax.grad(loss), (w,), (v,))[1])

    def apply(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.asarray(f(w, v))

    return apply


def loss_and_grad(loss: Callable[[Any], Any]) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """``f(w) = (L(w), ∇L(w))`` of a JAX loss, jitted; float64 only."""
    jax = _require_x64()
    f = jax.jit(jax.value_and_grad(loss))

    def apply(w: np.ndarray) -> tuple[float, np.ndarray]:
        val, g = f(w)
        return float(val), np.asarray(g)

    return apply
