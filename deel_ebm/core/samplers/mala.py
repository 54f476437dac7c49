r"""Metropolis-Hastings around any proposal kernel; MALA = MH(Langevin).

:class:`MetropolisHastings` turns a kernel that can report its proposal density
ratio (:meth:`~deel_ebm.core.samplers.Kernel.log_proposal_ratio`) into an exact
sampler of :math:`\pi \propto e^{-E/T}`: the proposal :math:`y` of the inner kernel
is accepted with probability :math:`\min(1, \alpha)`,

.. math:: \log\alpha = \frac{E(x) - E(y)}{T} + \log q(x|y) - \log q(y|x).

:class:`MALASampler` is that wrapper around the unadjusted Langevin proposal, as
tensorflow-probability builds ``MetropolisHastings(UncalibratedLangevin(...))``.
"""

from __future__ import annotations

from deel_ebm._backend import keras, tf
from deel_ebm._checks import check_domain, check_positive, check_probability
from deel_ebm.core.samplers.kernel import ChainState, Kernel, StepResults
from deel_ebm.core.samplers.langevin import (
    DEFAULT_NUM_STEPS,
    DEFAULT_STEP_SIZE,
    LangevinSampler,
    langevin_log_proposal_ratio,
)

__all__ = ["MetropolisHastings", "MALASampler", "mala_log_accept_ratio"]


def mala_log_accept_ratio(x, y, e_x, e_y, g_x, g_y, step_size, temperature=1.0):
    r"""Log Metropolis-Hastings ratio of the Langevin proposal ``x → y``.

    Target :math:`\pi \propto e^{-E/T}`, proposal
    :math:`q(y|x) = \mathcal N(x - \frac{\eta}{T}\nabla E(x), 2\eta I)`:

    .. math:: \log\alpha = \frac{E(x) - E(y)}{T} + \log q(x|y) - \log q(y|x).
    """
    correction = langevin_log_proposal_ratio(x, y, g_x, g_y, step_size, temperature)
    return (e_x - e_y) / temperature + correction


@keras.utils.register_keras_serializable(package="deel_ebm")
class MetropolisHastings(Kernel):
    """Metropolis-Hastings correction of a proposal kernel.

    Args:
        inner_kernel: a kernel implementing ``log_proposal_ratio`` (e.g. a
            :class:`~deel_ebm.core.samplers.LangevinSampler` without ``domain``).
        domain: optional ``(low, high)``: proposals leaving the box are rejected,
            which samples the target restricted to it.

    The chain length and XLA choice are the inner kernel's.
    """

    is_calibrated = True

    def __init__(self, inner_kernel, domain=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(inner_kernel, dict):
            inner_kernel = keras.utils.deserialize_keras_object(inner_kernel)
        if not isinstance(inner_kernel, Kernel):
            raise TypeError(
                f"inner_kernel must be a deel_ebm kernel, got {inner_kernel!r}"
            )
        self.inner_kernel = inner_kernel
        self.domain = check_domain(domain, allow_none=True)

    @property
    def num_steps(self):
        return self.inner_kernel.num_steps

    @property
    def jit_compile(self):
        return self.inner_kernel.jit_compile

    def _inside(self, y):
        if self.domain is None:
            return None
        inside = (y >= self.domain[0]) & (y <= self.domain[1])
        return tf.reduce_all(tf.reshape(inside, [tf.shape(y)[0], -1]), axis=1)

    def one_step(self, energy_fn, state: ChainState, seed):
        """Propose with the inner kernel, then accept or keep each chain."""
        inner_seed, accept_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, num=2)
        )
        proposed, inner_results = self.inner_kernel.one_step(
            energy_fn, state, inner_seed
        )
        temperature = inner_results.temperature
        log_ratio = (
            state.energy - proposed.energy
        ) / temperature + self.inner_kernel.log_proposal_ratio(
            state, proposed, inner_results
        )
        u = tf.random.stateless_uniform(tf.shape(state.energy), accept_seed)
        accept = tf.math.log(u) < log_ratio
        inside = self._inside(proposed.x)
        if inside is not None:
            accept = accept & inside
        accept = accept & tf.math.is_finite(proposed.energy)
        mask = tf.reshape(accept, [-1] + [1] * (len(state.x.shape) - 1))
        new_state = ChainState(
            tf.where(mask, proposed.x, state.x),
            tf.where(accept, proposed.energy, state.energy),
            tf.where(mask, proposed.grad, state.grad),
            proposed.step,
        )
        return new_state, StepResults(tf.cast(accept, tf.float32), temperature)

    def get_config(self):
        config = super().get_config()
        config.update(
            inner_kernel=keras.utils.serialize_keras_object(self.inner_kernel),
            domain=None if self.domain is None else list(self.domain),
        )
        return config


@keras.utils.register_keras_serializable(package="deel_ebm")
class MALASampler(MetropolisHastings):
    r"""Metropolis-adjusted Langevin: ``MetropolisHastings(LangevinSampler(...))``.

    Exact for any step size: the chain leaves :math:`\pi \propto e^{-E/T}`
    invariant (the Langevin noise scale is 1). Proposals outside ``domain`` are
    rejected, which samples the target restricted to the box. Use it to sample a
    trained model faithfully; ``results.acceptance_rate`` of
    :func:`~deel_ebm.core.samplers.sample_chain` tells whether the step size suits
    the energy (aim for about 0.5–0.7).

    As training chains, set ``target_accept``: after each training chain the
    step size is multiplied by ``exp(adapt_rate · (acceptance − target))`` and
    kept in ``[min_step_size, max_step_size]``. The cap matters: where the
    learned energy is flat every proposal is accepted and, uncapped, the step
    grows until chains jump across the box (measured: to 2.5–4 on rings).

    Args:
        num_steps, step_size, init_temperature, anneal_fraction, jit_compile: those
            of the Langevin proposal (:class:`LangevinSampler`).
        domain: optional ``(low, high)`` box of the target.
        target_accept: acceptance the step size is adapted toward during
            training (None: no adaptation).
        adapt_rate: gain of the adaptation (per training step).
        min_step_size, max_step_size: the adapted step's range (default
            ``max_step_size``: 4 × the initial step; ``min_step_size``: 1/100 of it).
            Adaptation runs on one device (under a ``tf.distribute`` strategy the
            step size stays fixed).

    Example:
        >>> from deel_ebm.core.samplers import MALASampler, sample_chain
        >>> sampler = MALASampler(num_steps=200, step_size=0.1)
        >>> energy = lambda x: 0.5 * tf.reduce_sum(x**2, axis=1)
        >>> out = sample_chain(sampler, energy, tf.zeros([512, 2]), seed=[3, 4])
        >>> 0.5 < float(out.results.acceptance_rate) < 1.0
        True
    """

    def __init__(
        self,
        num_steps: int = DEFAULT_NUM_STEPS,
        step_size: float = DEFAULT_STEP_SIZE,
        init_temperature: float = 1.0,
        anneal_fraction: float = 1.0,
        domain=None,
        jit_compile="auto",
        target_accept: float | None = None,
        adapt_rate: float = 0.05,
        min_step_size: float | None = None,
        max_step_size: float | None = None,
        **kwargs,
    ):
        if kwargs.get("noise_scale", 1.0) != 1.0:
            raise ValueError(
                f"MALA samples exp(-E/T) exactly; noise_scale must be 1, "
                f"got {kwargs['noise_scale']}"
            )
        kwargs.pop("noise_scale", None)
        proposal = LangevinSampler(
            num_steps=num_steps,
            step_size=step_size,
            init_temperature=init_temperature,
            anneal_fraction=anneal_fraction,
            jit_compile=jit_compile,
        )
        super().__init__(proposal, domain=domain, **kwargs)
        if target_accept is not None:
            target_accept = check_probability("target_accept", target_accept)
            if not 0.0 < target_accept < 1.0:
                raise ValueError(
                    f"target_accept must lie in (0, 1), got {target_accept}"
                )
        self.target_accept = target_accept
        self.adapt_rate = check_positive("adapt_rate", adapt_rate)
        step = float(step_size)
        self.max_step_size = check_positive(
            "max_step_size", 4.0 * step if max_step_size is None else max_step_size
        )
        self.min_step_size = check_positive(
            "min_step_size", step / 100.0 if min_step_size is None else min_step_size
        )
        if self.min_step_size > self.max_step_size:
            raise ValueError(
                f"min_step_size {self.min_step_size} exceeds max_step_size "
                f"{self.max_step_size}"
            )
        slack = 1e-6  # the adapted step is a float32 variable
        low, high = self.min_step_size * (1 - slack), self.max_step_size * (1 + slack)
        if not low <= step <= high:
            raise ValueError(
                f"step_size {step} lies outside [min_step_size, max_step_size] = "
                f"[{self.min_step_size}, {self.max_step_size}]"
            )

    def adapt(self, results) -> None:
        """Move the step size toward ``target_accept`` (no-op without one)."""
        if self.target_accept is None:
            return
        factor = tf.exp(
            self.adapt_rate
            * (tf.cast(results.acceptance_rate, tf.float32) - self.target_accept)
        )
        self.step_size.assign(
            tf.clip_by_value(
                self.step_size * factor, self.min_step_size, self.max_step_size
            )
        )

    @property
    def step_size(self):
        """The proposal's step size (a ``tf.Variable``)."""
        return self.inner_kernel.step_size

    @property
    def init_temperature(self):
        return self.inner_kernel.init_temperature

    @property
    def anneal_fraction(self):
        return self.inner_kernel.anneal_fraction

    def get_config(self):
        config = super().get_config()
        inner = self.inner_kernel
        config.pop("inner_kernel")
        config.update(
            num_steps=inner.num_steps,
            step_size=float(inner.step_size.numpy()),
            init_temperature=inner.init_temperature,
            anneal_fraction=inner.anneal_fraction,
            jit_compile=inner.jit_compile,
            target_accept=self.target_accept,
            adapt_rate=self.adapt_rate,
            min_step_size=self.min_step_size,
            max_step_size=self.max_step_size,
        )
        return config
