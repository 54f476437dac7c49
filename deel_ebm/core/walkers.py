r"""Jarzynski-weighted persistent walkers (Carbone et al., NeurIPS 2023).

Persistent chains cannot move mass between separated modes, so plain PCD has no
restoring force on the modes' weights. Weighted walkers fix the bias: each
walker :math:`x_i` carries a log-weight :math:`A_i` such that the weighted
walkers stay an importance sample of the *current* model :math:`p_\theta`,

- when the parameters move :math:`\theta \to \theta'` at a fixed :math:`x`:
  :math:`A_i \mathrel{+}= -(E_{\theta'}(x_i) - E_\theta(x_i))`;
- when a walker moves :math:`x \to y` by a kernel :math:`T` that does not leave
  :math:`p_\theta` exactly invariant (unadjusted Langevin), the sequential-Monte-
  Carlo weight of the move with :math:`T` as its own backward kernel:
  :math:`A_i \mathrel{+}= -E(y) + E(x) + \log T(x \mid y) - \log T(y \mid x)`
  (the Metropolis-Hastings log-ratio; zero for an exact kernel such as MALA,
  whose accepted and rejected moves both keep :math:`p_\theta` invariant).

The likelihood's gradient then weights the walkers by :math:`\mathrm{softmax}(A)`;
when the weights degenerate (effective sample size below ``resample_ess`` of the
walkers) the walkers are resampled in proportion to their weights and the
weights reset. Every walker moves at every training step (the population is
the negatives, ``num_walkers`` of them).
"""

from __future__ import annotations

import numbers

from deel_ebm._backend import keras, tf
from deel_ebm.core._random import categorical
from deel_ebm.core.samplers.kernel import Kernel

__all__ = ["JarzynskiWalkers", "DEFAULT_NUM_WALKERS", "DEFAULT_RESAMPLE_ESS"]

DEFAULT_NUM_WALKERS = 1024
#: resample when the effective sample size falls below this share of the walkers
DEFAULT_RESAMPLE_ESS = 0.5


@keras.utils.register_keras_serializable(package="deel_ebm")
class JarzynskiWalkers(keras.layers.Layer):
    """A population of weighted persistent walkers (the negatives of training).

    Args:
        num_walkers: walkers, all moved and used at every step.
        resample_ess: resample when ``ESS / num_walkers`` falls below it, in
            ``(0, 1]`` (1: resample at every step, i.e. sequential importance
            resampling; small: rarely).
        domain: ``(low, high)`` of the uniform box the walkers start from
            (default: the model's replay-buffer domain).
    """

    def __init__(
        self,
        num_walkers: int = DEFAULT_NUM_WALKERS,
        resample_ess: float = DEFAULT_RESAMPLE_ESS,
        domain=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(num_walkers, bool) or not isinstance(
            num_walkers, numbers.Integral
        ):
            raise TypeError(f"num_walkers must be an integer, got {num_walkers!r}")
        if num_walkers < 2:
            raise ValueError(f"num_walkers must be at least 2, got {num_walkers}")
        if not (isinstance(resample_ess, numbers.Real) and 0 < resample_ess <= 1):
            raise ValueError(f"resample_ess must lie in (0, 1], got {resample_ess!r}")
        if domain is not None:
            domain = (float(domain[0]), float(domain[1]))
            if not domain[0] < domain[1]:
                raise ValueError(f"domain must be (low, high), got {domain}")
        self.num_walkers = int(num_walkers)
        self.resample_ess = float(resample_ess)
        self.domain = domain

    def build(self, input_shape):
        shape = (self.num_walkers, *tuple(input_shape)[1:])
        zeros = keras.initializers.Zeros()
        self.x = self.add_weight(
            name="x", shape=shape, initializer=zeros, trainable=False
        )
        self.log_weights = self.add_weight(
            name="log_weights", shape=(self.num_walkers,), initializer=zeros,
            trainable=False,
        )  # fmt: skip
        self.energies = self.add_weight(
            name="energies", shape=(self.num_walkers,), initializer=zeros,
            trainable=False,
        )  # fmt: skip
        self.started = self.add_weight(
            name="started", shape=(), initializer=zeros, trainable=False
        )
        self.resamples = self.add_weight(
            name="resamples", shape=(), initializer=zeros, trainable=False
        )
        super().build(input_shape)

    # ------------------------------------------------------------ one step
    def advance(self, energy_fn, sampler: Kernel, domain, seed):
        """Move every walker by ``sampler.num_steps`` transitions of the current
        model, updating the log-weights (a pure function of the variables).

        Returns:
            ``(x, log_weights, energies, ess, resampled)``: the moved walkers,
            their log-weights, their energies under the current model (no
            gradient), the effective sample size share before any resampling,
            and 1.0 if the walkers were resampled (else 0.0).
        """
        start_seed, resample_seed, chain_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
        )
        low, high = self.domain or domain
        fresh = tf.random.stateless_uniform(
            tf.shape(self.x), start_seed, minval=low, maxval=high
        )
        started = self.started > 0
        x = tf.where(started, self.x, fresh)
        log_w = tf.where(started, self.log_weights, tf.zeros_like(self.log_weights))
        state = sampler.bootstrap(energy_fn, x)
        # started: the parameters moved since the walkers' energies were stored;
        # fresh uniform draws: their importance weights p / uniform
        log_w = tf.where(started, log_w - (state.energy - self.energies), -state.energy)
        ess = _ess_share(log_w)
        resample = ess < self.resample_ess
        picks = categorical(log_w, self.num_walkers, resample_seed)
        state = tf.nest.map_structure(
            lambda t: (
                tf.where(_expand(resample, t), tf.gather(t, picks), t)
                if t.shape.rank
                else t
            ),
            state,
        )
        log_w = tf.where(resample, tf.zeros_like(log_w), log_w)
        state, log_w = self._moves(energy_fn, sampler)(state, log_w, chain_seed)
        return (
            tf.stop_gradient(state.x),
            tf.stop_gradient(log_w),
            tf.stop_gradient(state.energy),
            ess,
            tf.cast(resample, tf.float32),
        )

    def _moves(self, energy_fn, sampler):
        """The walkers' moves as one compiled function (XLA unless the sampler
        says otherwise), cached per energy function and sampler."""
        cache = self.__dict__.setdefault("_compiled", {})
        key = (id(energy_fn), id(sampler))
        if key not in cache:
            jit = True if sampler.jit_compile == "auto" else sampler.jit_compile
            cache[key] = (
                tf.function(
                    lambda state, log_w, seed: _move(
                        energy_fn, sampler, state, log_w, seed
                    ),
                    jit_compile=jit,
                ),
                energy_fn,  # keeps the id alive
            )
        return cache[key][0]

    def commit(self, x, log_weights, energies, resampled) -> None:
        """Store the walkers after an applied training step (``energies``
        under the parameters before the update)."""
        self.x.assign(x)
        self.log_weights.assign(log_weights - tf.reduce_max(log_weights))
        self.energies.assign(energies)
        self.started.assign(1.0)
        self.resamples.assign_add(resampled)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_walkers=self.num_walkers,
            resample_ess=self.resample_ess,
            domain=None if self.domain is None else list(self.domain),
        )
        return config


def _move(energy_fn, sampler, state, log_w, seed):
    """``sampler.num_steps`` transitions; each inexact move adds its
    Metropolis-Hastings log-ratio to the log-weights."""
    calibrated = sampler.is_calibrated

    def body(state, log_w):
        step_seed = tf.random.experimental.stateless_fold_in(seed, state.step)
        new, results = sampler.one_step(energy_fn, state, step_seed)
        if not calibrated:
            log_w += (
                state.energy
                - new.energy
                + sampler.log_proposal_ratio(state, new, results)
            )
        return new, log_w

    steps = sampler.num_steps
    return tf.while_loop(
        lambda state, _: state.step < steps,
        body,
        (state, log_w),
        maximum_iterations=steps,
    )


def _ess_share(log_w):
    """Effective sample size of the weights, as a share of their number."""
    w = tf.nn.softmax(log_w)
    n = tf.cast(tf.shape(log_w)[0], log_w.dtype)
    return 1.0 / tf.reduce_sum(tf.square(w)) / n


def _expand(flag, t):
    return tf.reshape(flag, [1] * t.shape.rank)
