r"""Replica exchange (parallel tempering) on a temperature ladder derived from k.

A chain of :math:`e^{-E}` crosses an energy barrier :math:`\Delta E` at a rate of
about :math:`e^{-\Delta E}`: between two modes a gap of width :math:`d` apart, a
k-Lipschitz energy can raise a barrier of at most :math:`k d / 2` (it rises at
most :math:`k` per unit length from either side). At temperature :math:`T`, the
chains of :math:`e^{-E/T}` see a barrier of at most :math:`k d / (2T)`, so a top
temperature :math:`T_{max} = k d / 2` crosses any gap of width :math:`d` freely:
the Lipschitz bound tells how hot the ladder must go
(:func:`temperature_ladder`).

:class:`ReplicaExchange` runs one replica of every chain at each temperature of
the ladder (an inner kernel moves each replica on :math:`e^{-E/T_l}`, with a step
:math:`T_l` times its own, as wide as the tempered density) and, after
every move, proposes to swap the states of neighbouring temperatures, the even
pairs on even steps and the odd pairs on odd steps, accepted with probability
:math:`\min(1, e^{(1/T_l - 1/T_{l+1})(E_l - E_{l+1})})`. Swaps leave the joint
target invariant, so with an exact inner kernel (MALA) the ``T = 1`` replicas
sample :math:`e^{-E}` exactly; they are the chains returned.
"""

from __future__ import annotations

import math

import numpy as np

from deel_ebm._backend import keras, tf
from deel_ebm._checks import check_positive
from deel_ebm.core.samplers.kernel import ChainState, Kernel, StepResults

__all__ = ["ReplicaExchange", "temperature_ladder"]


def temperature_ladder(k_coef_lip, gap, num_temperatures=None) -> tuple:
    r"""A geometric ladder from 1 to :math:`T_{max} = \max(2, k\,d/2)`.

    Args:
        k_coef_lip: the energy's Lipschitz constant k.
        gap: the width :math:`d` of the widest low-density gap the chains must
            cross (e.g. the distance between two modes, less their widths).
        num_temperatures: rungs (default: neighbouring temperatures a factor of
            about 2 apart, at least 2 rungs).

    Example:
        >>> [round(t, 3) for t in temperature_ladder(20.0, 1.0)]
        [1.0, 1.778, 3.162, 5.623, 10.0]
    """
    k = check_positive("k_coef_lip", k_coef_lip)
    d = check_positive("gap", gap)
    top = max(2.0, k * d / 2.0)
    if num_temperatures is None:
        num_temperatures = max(2, math.ceil(math.log2(top)) + 1)
    if isinstance(num_temperatures, bool) or not isinstance(num_temperatures, int):
        raise TypeError(f"num_temperatures must be an integer, got {num_temperatures}")
    if num_temperatures < 2:
        raise ValueError(f"num_temperatures must be at least 2, got {num_temperatures}")
    return tuple(float(t) for t in np.geomspace(1.0, top, num_temperatures))


@keras.utils.register_keras_serializable(package="deel_ebm")
class ReplicaExchange(Kernel):
    """Parallel tempering around an inner kernel.

    Args:
        inner_kernel: the moves of each replica (e.g. a
            :class:`~deel_ebm.core.samplers.MALASampler`; without annealing).
        temperatures: the ladder, increasing from 1 (see
            :func:`temperature_ladder`).

    ``bootstrap`` starts every replica of a chain at the chain's start; the
    chain state holds ``len(temperatures)`` replicas per chain, temperature
    by temperature, and :meth:`finalize` returns the ``T = 1`` ones. The chain
    length and XLA choice are the inner kernel's; ``results.acceptance_rate``
    is the inner moves' over all replicas, and ``swap_rate`` of the last call is
    kept in :attr:`last_swap_rate` (eager calls only).
    """

    def __init__(self, inner_kernel, temperatures=(1.0, 2.0, 4.0, 8.0), **kwargs):
        super().__init__(**kwargs)
        if isinstance(inner_kernel, dict):
            inner_kernel = keras.utils.deserialize_keras_object(inner_kernel)
        if not isinstance(inner_kernel, Kernel):
            raise TypeError(
                f"inner_kernel must be a deel_ebm kernel, got {inner_kernel!r}"
            )
        if getattr(inner_kernel, "init_temperature", 1.0) != 1.0:
            raise ValueError("the inner kernel must not anneal: the ladder tempers")
        if getattr(inner_kernel, "domain", None) is not None:
            raise ValueError(
                "the inner kernel must have no domain (replicas move in rescaled "
                "coordinates)"
            )
        temps = tuple(float(t) for t in temperatures)
        if (
            len(temps) < 2
            or temps[0] != 1.0
            or any(not (b > a) for a, b in zip(temps, temps[1:]))
        ):
            raise ValueError(
                f"temperatures must increase from 1.0 (at least two), got {temps}"
            )
        if not all(math.isfinite(t) for t in temps):
            raise ValueError(f"temperatures must be finite, got {temps}")
        self.inner_kernel = inner_kernel
        self.temperatures = temps
        self.is_calibrated = inner_kernel.is_calibrated

    @property
    def num_steps(self):
        return self.inner_kernel.num_steps

    @property
    def jit_compile(self):
        return self.inner_kernel.jit_compile

    @property
    def num_replicas(self) -> int:
        return len(self.temperatures)

    def _betas(self, n):
        betas = tf.constant([1.0 / t for t in self.temperatures], tf.float32)
        return tf.repeat(betas, n)  # replica-major: (L * n,)

    def bootstrap(self, energy_fn, x0) -> ChainState:
        x0 = tf.convert_to_tensor(x0, tf.float32)
        tiled = tf.tile(x0, [self.num_replicas] + [1] * (len(x0.shape) - 1))
        return super().bootstrap(energy_fn, tiled)

    def finalize(self, state: ChainState) -> ChainState:
        """The ``T = 1`` replicas."""
        n = tf.shape(state.x)[0] // self.num_replicas
        return ChainState(state.x[:n], state.energy[:n], state.grad[:n], state.step)

    def one_step(self, energy_fn, state: ChainState, seed):
        move_seed, swap_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, num=2)
        )
        m = tf.shape(state.x)[0]
        n = m // self.num_replicas
        beta = self._betas(n)
        # each replica moves in z = x / sqrt(T) on E(sqrt(T) z) / T: the inner
        # kernel's step then acts as a step T times larger in x, as wide as the
        # tempered density (same drift, sqrt(T) times the noise)
        scale = tf.reshape(tf.math.rsqrt(beta), [-1] + [1] * (len(state.x.shape) - 1))

        def tempered(z):
            return energy_fn(z * scale) * beta

        scaled = ChainState(
            state.x / scale, state.energy * beta, state.grad / scale, state.step
        )
        moved, results = self.inner_kernel.one_step(tempered, scaled, move_seed)
        energy = moved.energy / beta
        grad = moved.grad * scale
        x, energy, grad = self._swap(
            moved.x * scale, energy, grad, n, moved.step, swap_seed
        )
        return ChainState(x, energy, grad, moved.step), StepResults(
            results.accepted, tf.constant(1.0)
        )

    def _swap(self, x, energy, grad, n, step, seed):
        """Swap neighbouring replicas, even pairs on even steps, odd on odd."""
        num = self.num_replicas
        betas = tf.constant([1.0 / t for t in self.temperatures], tf.float32)
        e = tf.reshape(energy, [num, n])
        log_alpha = (betas[:-1, None] - betas[1:, None]) * (e[:-1] - e[1:])
        parity = tf.cast(tf.math.floormod(step, 2), tf.int32)
        eligible = tf.math.floormod(tf.range(num - 1), 2) == parity
        u = tf.random.stateless_uniform([num - 1, n], seed)
        accept = eligible[:, None] & (tf.math.log(u) < log_alpha)
        accept = accept & tf.math.is_finite(log_alpha)
        accept = tf.cast(accept, tf.int32)
        zeros = tf.zeros([1, n], tf.int32)
        up = tf.concat([accept, zeros], axis=0)  # rung l takes l + 1's state
        down = tf.concat([zeros, accept], axis=0)  # rung l takes l - 1's state
        rung = tf.range(num)[:, None] + up - down
        source = tf.reshape(rung * n + tf.range(n)[None, :], [-1])
        return tf.gather(x, source), tf.gather(energy, source), tf.gather(grad, source)

    def get_config(self):
        config = super().get_config()
        config.update(
            inner_kernel=keras.utils.serialize_keras_object(self.inner_kernel),
            temperatures=list(self.temperatures),
        )
        return config
