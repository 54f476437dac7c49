r"""Unadjusted Langevin dynamics (ULA), optionally annealed.

With step size :math:`\eta`, noise scale :math:`\tau` and temperature :math:`T_t`:

.. math:: x_{t+1} = x_t - \frac{\eta}{T_t} \nabla_x E(x_t) + \sqrt{2\eta}\,\tau\,\xi_t,
   \qquad \xi_t \sim \mathcal N(0, I).

With :math:`\tau = T = 1` it samples :math:`p \propto e^{-E}` as :math:`\eta \to 0`;
:class:`~deel_ebm.core.samplers.MALASampler` wraps the same proposal in a
Metropolis-Hastings test and is exact for any :math:`\eta`. With a k-Lipschitz
energy the drift moves a point by at most :math:`\eta k` per step: chains cannot
explode and need no gradient clipping.
"""

from __future__ import annotations

from deel_ebm._backend import keras, tf
from deel_ebm._checks import check_count, check_domain, check_factor, check_positive
from deel_ebm.core._hyper import hyper_parameter
from deel_ebm.core.samplers.kernel import (
    ChainState,
    Kernel,
    StepResults,
    energy_and_grad,
    sq_norm,
)

__all__ = [
    "LangevinSampler",
    "langevin_proposal",
    "langevin_log_proposal_ratio",
    "DEFAULT_NUM_STEPS",
    "DEFAULT_STEP_SIZE",
]

DEFAULT_NUM_STEPS = 60
DEFAULT_STEP_SIZE = 5e-3
JIT_CHOICES = (True, False, "auto")


def langevin_proposal(x, grad, step_size, noise_scale, noise, temperature=1.0):
    r"""One Langevin move :math:`x - \frac{\eta}{T}\nabla E + \sqrt{2\eta}\tau\xi`."""
    return (
        x
        - (step_size / temperature) * grad
        + tf.sqrt(2.0 * step_size) * (noise_scale * noise)
    )


def langevin_log_proposal_ratio(x, y, g_x, g_y, step_size, temperature=1.0):
    r""":math:`\log q(x|y) - \log q(y|x)` for the Langevin proposal (:math:`\tau = 1`).

    With :math:`q(y|x) = \mathcal N(x - \frac{\eta}{T}\nabla E(x), 2\eta I)`:

    .. math:: \log\frac{q(x|y)}{q(y|x)} = \frac{\|y - x + \frac{\eta}{T}
       \nabla E(x)\|^2 - \|x - y + \frac{\eta}{T}\nabla E(y)\|^2}{4\eta}.
    """
    fwd = sq_norm(y - x + (step_size / temperature) * g_x)
    bwd = sq_norm(x - y + (step_size / temperature) * g_y)
    return (fwd - bwd) / (4.0 * step_size)


def check_jit_compile(jit_compile):
    """``jit_compile`` as one of :data:`JIT_CHOICES`."""
    if jit_compile not in JIT_CHOICES:
        raise ValueError(
            f"jit_compile must be one of {JIT_CHOICES}, got {jit_compile!r}"
        )
    return jit_compile


@keras.utils.register_keras_serializable(package="deel_ebm")
class LangevinSampler(Kernel):
    r"""Unadjusted Langevin dynamics (ULA) on an energy.

    Update: :math:`x \leftarrow x - \frac{\eta}{T_t}\nabla_x E(x) +
    \sqrt{2\eta}\,\tau\,\xi`. With ``init_temperature`` :math:`T_0 > 1` the chain
    is annealed geometrically from :math:`T_0` down to 1 over the first
    ``anneal_fraction`` of ``num_steps`` steps, then stays at 1 (a hot start lets
    chains cross between modes; the steps at T = 1 relax them towards
    :math:`e^{-E}`). A chain run longer than ``num_steps`` keeps T = 1 after the
    schedule.

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
        >>> from deel_ebm.core.samplers import LangevinSampler, sample_chain
        >>> sampler = LangevinSampler(num_steps=100, step_size=1e-2)
        >>> energy = lambda x: 0.5 * tf.reduce_sum(x**2, axis=1)  # N(0, I)
        >>> out = sample_chain(sampler, energy, tf.zeros([512, 2]), seed=[1, 2])
        >>> out.state.x.shape, float(out.results.acceptance_rate)
        (TensorShape([512, 2]), 1.0)
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
        self.num_steps = check_count("num_steps", num_steps)
        step_size = check_positive("step_size", step_size)
        noise_scale = check_positive("noise_scale", noise_scale)
        self.init_temperature = check_positive("init_temperature", init_temperature)
        if self.init_temperature < 1.0:
            raise ValueError(
                f"init_temperature must be >= 1, got {self.init_temperature}"
            )
        self.anneal_fraction = check_factor("anneal_fraction", anneal_fraction)
        self.domain = check_domain(domain, allow_none=True)
        self.jit_compile = check_jit_compile(jit_compile)
        self.step_size = self._hyper("step_size", step_size)
        self.noise_scale = self._hyper("noise_scale", noise_scale)

    def _hyper(self, name, value):
        return hyper_parameter(self, name, value)

    def temperature(self, step) -> tf.Tensor:
        """The temperature of transition ``step`` (0-based) of the schedule."""
        anneal_steps = int(round(self.anneal_fraction * self.num_steps))
        if self.init_temperature == 1.0 or anneal_steps <= 1:
            return tf.constant(1.0)
        frac = tf.minimum(tf.cast(step, tf.float32) / float(anneal_steps - 1), 1.0)
        return tf.pow(self.init_temperature, 1.0 - frac)

    def _clip(self, x):
        if self.domain is None:
            return x
        return tf.clip_by_value(x, self.domain[0], self.domain[1])

    def one_step(self, energy_fn, state: ChainState, seed):
        """One Langevin move from ``state`` (clipped to ``domain`` if set)."""
        temperature = self.temperature(state.step)
        noise = tf.random.stateless_normal(tf.shape(state.x), seed)
        y = self._clip(
            langevin_proposal(
                state.x,
                state.grad,
                self.step_size,
                self.noise_scale,
                noise,
                temperature,
            )
        )
        e_y, g_y = energy_and_grad(energy_fn, y)
        new_state = ChainState(y, e_y, g_y, state.step + 1)
        return new_state, StepResults(tf.ones_like(e_y), temperature)

    def log_proposal_ratio(self, state, proposed, results) -> tf.Tensor:
        """:func:`langevin_log_proposal_ratio` of the move (unclipped proposal)."""
        return langevin_log_proposal_ratio(
            state.x,
            proposed.x,
            state.grad,
            proposed.grad,
            self.step_size,
            results.temperature,
        )

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
