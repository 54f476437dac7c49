r"""Langevin samplers: pure update rules and a compiled chain driver.

The update rules are pure functions of tensors (as in tensorflow-probability's
``TransitionKernel.one_step``); :class:`LangevinSampler` and :class:`MALASampler`
are thin serialisable Keras objects that hold the hyper-parameters (step size and
noise scale in ``tf.Variable``\ s, so a callback can change them without a retrace)
and run ``num_steps`` updates in one ``tf.while_loop``.

Unadjusted Langevin (ULA), with step size :math:`\eta`, noise scale :math:`\tau`
and temperature :math:`T_t`:

.. math:: x_{t+1} = x_t - \frac{\eta}{T_t} \nabla_x E(x_t) + \sqrt{2\eta}\,\tau\,\xi_t,
   \qquad \xi_t \sim \mathcal N(0, I).

With :math:`\tau = T = 1` it samples :math:`p \propto e^{-E}` as :math:`\eta \to 0`.
MALA adds a Metropolis-Hastings test to the same proposal and is exact for any
:math:`\eta`. With a k-Lipschitz energy the drift moves a point by at most
:math:`\eta k` per step: chains cannot explode and need no gradient clipping.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple

from deel_ebm._backend import keras, tf

__all__ = [
    "ChainResults",
    "LangevinSampler",
    "MALASampler",
    "langevin_proposal",
    "mala_log_accept_ratio",
    "energy_and_grad",
    "SAMPLERS",
]

DEFAULT_NUM_STEPS = 60
DEFAULT_STEP_SIZE = 5e-3
_JIT_CHOICES = (True, False, "auto")


class ChainResults(NamedTuple):
    """Diagnostics of one chain run (scalars).

    Attributes:
        grad_norm_mean: mean of ``‖∇E(x_t)‖`` over steps and chains.
        grad_norm_max: largest ``‖∇E(x_t)‖`` met along the chains.
        acceptance_rate: share of accepted proposals (1 for unadjusted Langevin).
        energy: mean energy of the final states.
    """

    grad_norm_mean: tf.Tensor
    grad_norm_max: tf.Tensor
    acceptance_rate: tf.Tensor
    energy: tf.Tensor


def energy_and_grad(energy_fn: Callable, x: tf.Tensor):
    """Per-sample energies ``(n,)`` and their input gradients (shape of ``x``)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        energy = energy_fn(x)
    return energy, tape.gradient(energy, x)


def langevin_proposal(x, grad, step_size, noise_scale, noise, temperature=1.0):
    r"""One Langevin move :math:`x - \frac{\eta}{T}\nabla E + \sqrt{2\eta}\tau\xi`."""
    return (
        x
        - (step_size / temperature) * grad
        + tf.sqrt(2.0 * step_size) * (noise_scale * noise)
    )


def _sq_norm(v):
    return tf.reduce_sum(tf.reshape(tf.square(v), [tf.shape(v)[0], -1]), axis=1)


def mala_log_accept_ratio(x, y, e_x, e_y, g_x, g_y, step_size, temperature=1.0):
    r"""Log Metropolis-Hastings ratio of the Langevin proposal ``x → y``.

    Target :math:`\pi \propto e^{-E/T}`, proposal
    :math:`q(y|x) = \mathcal N(x - \frac{\eta}{T}\nabla E(x), 2\eta I)`:

    .. math:: \log\alpha = \frac{E(x) - E(y)}{T} + \log q(x|y) - \log q(y|x),
       \quad \log q(y|x) = -\frac{\|y - x + \frac{\eta}{T}\nabla E(x)\|^2}{4\eta}.
    """
    fwd = _sq_norm(y - x + (step_size / temperature) * g_x)
    bwd = _sq_norm(x - y + (step_size / temperature) * g_y)
    return (e_x - e_y) / temperature + (fwd - bwd) / (4.0 * step_size)


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_num_steps(num_steps):
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral):
        raise TypeError(f"num_steps must be an integer, got {num_steps!r}")
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    return int(num_steps)


@keras.utils.register_keras_serializable(package="deel_ebm")
class LangevinSampler(keras.layers.Layer):
    r"""Unadjusted Langevin dynamics (ULA) on an energy.

    Update: :math:`x \leftarrow x - \frac{\eta}{T_t}\nabla_x E(x) +
    \sqrt{2\eta}\,\tau\,\xi`. With ``init_temperature`` :math:`T_0 > 1` the chain
    is annealed geometrically from :math:`T_0` down to 1 over the first
    ``anneal_fraction`` of its steps, then stays at 1 (a hot start lets chains
    cross between modes; the steps at T = 1 relax them towards :math:`e^{-E}`).

    Args:
        num_steps: Langevin steps per chain run (K).
        step_size: :math:`\eta > 0`.
        noise_scale: :math:`\tau > 0`; 1 is proper Langevin. Values below 1 sample
            a sharpened density :math:`e^{-E/\tau^2}` (the IGEBM fudge).
        init_temperature: :math:`T_0 \ge 1`, start of the annealing schedule.
        anneal_fraction: share of the steps, in (0, 1], over which the temperature
            decreases to 1.
        domain: optional ``(low, high)``; states are clipped to it after each step.
        jit_compile: compile the chain with XLA (``"auto"``: yes on CPU and GPU).

    Raises:
        ValueError / TypeError: on a non-positive step size or noise scale, a
            negative number of steps, ``init_temperature < 1`` or an empty domain.

    Example:
        >>> sampler = LangevinSampler(num_steps=100, step_size=1e-2)
        >>> energy = lambda x: 0.5 * tf.reduce_sum(x**2, axis=1)  # N(0, I)
        >>> x, results = sampler.run(energy, tf.zeros([512, 2]), seed=[1, 2])
    """

    def __init__(
        self,
        num_steps: int = DEFAULT_NUM_STEPS,
        step_size: float = DEFAULT_STEP_SIZE,
        noise_scale: float = 1.0,
        init_temperature: float = 1.0,
        anneal_fraction: float = 1.0,
        domain=None,
        jit_compile="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_steps = _check_num_steps(num_steps)
        step_size = _check_positive("step_size", step_size)
        noise_scale = _check_positive("noise_scale", noise_scale)
        self.init_temperature = _check_positive("init_temperature", init_temperature)
        if self.init_temperature < 1.0:
            raise ValueError(
                f"init_temperature must be >= 1, got {self.init_temperature}"
            )
        self.anneal_fraction = _check_positive("anneal_fraction", anneal_fraction)
        if self.anneal_fraction > 1.0:
            raise ValueError(f"anneal_fraction must be <= 1, got {anneal_fraction}")
        if domain is not None:
            low, high = (float(v) for v in domain)
            if not low < high:
                raise ValueError(f"domain must satisfy low < high, got {domain!r}")
            domain = (low, high)
        self.domain = domain
        if jit_compile not in _JIT_CHOICES:
            raise ValueError(f"jit_compile must be one of {_JIT_CHOICES}")
        self.jit_compile = jit_compile
        self.step_size = self.add_weight(
            name="step_size",
            shape=(),
            initializer=keras.initializers.Constant(step_size),
            trainable=False,
        )
        self.noise_scale = self.add_weight(
            name="noise_scale",
            shape=(),
            initializer=keras.initializers.Constant(noise_scale),
            trainable=False,
        )

    # ---------------------------------------------------------------- one step
    def _temperature(self, t, num_steps):
        anneal_steps = int(round(self.anneal_fraction * num_steps))
        if self.init_temperature == 1.0 or anneal_steps <= 1:
            return tf.constant(1.0)
        frac = tf.minimum(tf.cast(t, tf.float32) / float(anneal_steps - 1), 1.0)
        return tf.pow(self.init_temperature, 1.0 - frac)

    def _clip(self, x):
        if self.domain is None:
            return x
        return tf.clip_by_value(x, self.domain[0], self.domain[1])

    def one_step(self, energy_fn, state, seed, temperature=1.0):
        """One transition from ``state = (x, E(x), ∇E(x))`` (a pure function).

        Returns:
            ``(new_state, accepted)``, ``accepted`` a float ``(n,)`` of 0/1.
        """
        x, _, grad = state
        noise = tf.random.stateless_normal(tf.shape(x), seed)
        y = self._clip(
            langevin_proposal(
                x, grad, self.step_size, self.noise_scale, noise, temperature
            )
        )
        e_y, g_y = energy_and_grad(energy_fn, y)
        return (y, e_y, g_y), tf.ones_like(e_y)

    # ---------------------------------------------------------------- driver
    def run(
        self,
        energy_fn: Callable,
        x0,
        seed,
        num_steps: int | None = None,
        return_trajectory: bool = False,
    ):
        """Run the chains ``num_steps`` steps from ``x0``.

        Args:
            energy_fn: maps a batch ``(n, *shape)`` to energies ``(n,)``.
            x0: starting states ``(n, *shape)``.
            seed: shape-[2] integer seed; the same seed gives the same chains.
            num_steps: overrides ``self.num_steps``.
            return_trajectory: also return all states ``(K + 1, n, *shape)``.

        Returns:
            ``(x, results)`` or ``(x, results, trajectory)``; ``results`` is a
            :class:`ChainResults`.
        """
        num_steps = self.num_steps if num_steps is None else _check_num_steps(num_steps)
        x0 = tf.convert_to_tensor(x0, tf.float32)
        seed = tf.cast(seed, tf.int64)
        e0, g0 = energy_and_grad(energy_fn, x0)
        n = tf.cast(tf.shape(x0)[0], tf.float32)
        norm0 = tf.sqrt(_sq_norm(g0))
        traj = tf.TensorArray(tf.float32, size=num_steps + 1, element_shape=x0.shape)
        if return_trajectory:
            traj = traj.write(0, x0)

        def body(t, x, e, g, norm_sum, norm_max, acc_sum, traj):
            step_seed = tf.random.experimental.stateless_fold_in(seed, t)
            temperature = self._temperature(t, num_steps)
            (x, e, g), accepted = self.one_step(
                energy_fn, (x, e, g), step_seed, temperature
            )
            norm = tf.sqrt(_sq_norm(g))
            if return_trajectory:
                traj = traj.write(t + 1, x)
            return (
                t + 1,
                x,
                e,
                g,
                norm_sum + tf.reduce_sum(norm),
                tf.maximum(norm_max, tf.reduce_max(norm)),
                acc_sum + tf.reduce_sum(accepted),
                traj,
            )

        init = (
            tf.constant(0),
            x0,
            e0,
            g0,
            tf.reduce_sum(norm0),
            tf.reduce_max(norm0),
            tf.constant(0.0),
            traj,
        )
        _, x, e, _, norm_sum, norm_max, acc_sum, traj = tf.while_loop(
            lambda t, *_: t < num_steps, body, init, maximum_iterations=num_steps
        )
        results = ChainResults(
            grad_norm_mean=norm_sum / (n * (num_steps + 1)),
            grad_norm_max=norm_max,
            acceptance_rate=acc_sum / (n * max(num_steps, 1)) if num_steps else 1.0,
            energy=tf.reduce_mean(e),
        )
        if return_trajectory:
            return x, results, traj.stack()
        return x, results

    def compiled_run(self, energy_fn: Callable) -> Callable:
        """A ``tf.function`` of ``(x0, seed)`` running :meth:`run` on ``energy_fn``.

        Traced once per input shape; XLA-compiled unless ``jit_compile=False``.
        """
        jit = self.jit_compile != False  # noqa: E712  ("auto" and True)

        @tf.function(jit_compile=jit, reduce_retracing=True)
        def chain(x0, seed):
            return self.run(energy_fn, x0, seed)

        return chain

    def call(self, inputs):  # samplers have no forward pass
        return inputs

    def get_config(self):
        config = super().get_config()
        config.update(
            num_steps=self.num_steps,
            step_size=float(self.step_size.numpy()),
            noise_scale=float(self.noise_scale.numpy()),
            init_temperature=self.init_temperature,
            anneal_fraction=self.anneal_fraction,
            domain=None if self.domain is None else list(self.domain),
            jit_compile=self.jit_compile,
        )
        return config


@keras.utils.register_keras_serializable(package="deel_ebm")
class MALASampler(LangevinSampler):
    r"""Metropolis-adjusted Langevin: the Langevin proposal plus an MH test.

    Exact for any step size: the chain leaves :math:`\pi \propto e^{-E/T}`
    invariant (``noise_scale`` is fixed to 1). Proposals outside ``domain`` are
    rejected, which samples the target restricted to the box. Use it to sample a
    trained model faithfully; ``results.acceptance_rate`` tells whether the step
    size suits the energy (aim for about 0.5–0.7).

    Example:
        >>> sampler = MALASampler(num_steps=200, step_size=0.1)
        >>> energy = lambda x: 0.5 * tf.reduce_sum(x**2, axis=1)
        >>> x, results = sampler.run(energy, tf.zeros([512, 2]), seed=[3, 4])
    """

    def __init__(self, num_steps=DEFAULT_NUM_STEPS, step_size=DEFAULT_STEP_SIZE, **kw):
        if kw.get("noise_scale", 1.0) != 1.0:
            raise ValueError(
                f"MALA samples exp(-E/T) exactly; noise_scale must be 1, "
                f"got {kw['noise_scale']}"
            )
        kw["noise_scale"] = 1.0
        super().__init__(num_steps=num_steps, step_size=step_size, **kw)

    def one_step(self, energy_fn, state, seed, temperature=1.0):
        x, e_x, g_x = state
        noise_seed, accept_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, num=2)
        )
        noise = tf.random.stateless_normal(tf.shape(x), noise_seed)
        y = langevin_proposal(x, g_x, self.step_size, 1.0, noise, temperature)
        e_y, g_y = energy_and_grad(energy_fn, y)
        log_ratio = mala_log_accept_ratio(
            x, y, e_x, e_y, g_x, g_y, self.step_size, temperature
        )
        u = tf.random.stateless_uniform(tf.shape(e_x), accept_seed)
        accept = tf.math.log(u) < log_ratio
        if self.domain is not None:
            inside = tf.reduce_all(
                tf.reshape(
                    (y >= self.domain[0]) & (y <= self.domain[1]), [tf.shape(y)[0], -1]
                ),
                axis=1,
            )
            accept = accept & inside
        accept = accept & tf.math.is_finite(e_y)
        mask = tf.reshape(accept, [-1] + [1] * (len(x.shape) - 1))
        new_state = (
            tf.where(mask, y, x),
            tf.where(accept, e_y, e_x),
            tf.where(mask, g_y, g_x),
        )
        return new_state, tf.cast(accept, tf.float32)

    def get_config(self):
        config = super().get_config()
        config.pop("noise_scale")
        return config


SAMPLERS = {"langevin": LangevinSampler, "mala": MALASampler}
