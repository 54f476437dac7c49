r"""The sampler contract: a transition kernel on an energy (tfp's ``TransitionKernel``).

A kernel is a pure step on a :class:`ChainState`::

    state = kernel.bootstrap(energy_fn, x0)                 # energies and gradients
    state, results = kernel.one_step(energy_fn, state, seed)  # one transition

``energy_fn`` maps a batch ``(n, *shape)`` to energies ``(n,)``; the kernel never
sees a model, only this callable. Randomness comes from the shape-[2] ``seed``
alone (stateless ops), so a step is a function of its inputs. Kernels hold their
hyper-parameters (step sizes in ``tf.Variable``\ s, so a callback can change them
without a retrace), are serialisable Keras objects, say whether they leave the
target exactly invariant (:attr:`Kernel.is_calibrated`) and make modified copies
(:meth:`Kernel.copy`). :func:`~deel_ebm.core.samplers.sample_chain` runs any kernel.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from deel_ebm._backend import keras, tf

__all__ = ["ChainState", "StepResults", "Kernel", "energy_and_grad", "sq_norm"]


class ChainState(NamedTuple):
    """The state of a batch of chains.

    Attributes:
        x: states ``(n, *shape)``.
        energy: ``E(x)``, shape ``(n,)``.
        grad: ``∇E(x)``, shape of ``x``.
        step: int32 scalar, the number of transitions made so far.
    """

    x: tf.Tensor
    energy: tf.Tensor
    grad: tf.Tensor
    step: tf.Tensor


class StepResults(NamedTuple):
    """Diagnostics of one transition.

    Attributes:
        accepted: float ``(n,)`` of 0/1 (all ones for unadjusted kernels).
        temperature: the temperature ``T`` of the step's target ``e^{-E/T}``.
    """

    accepted: tf.Tensor
    temperature: tf.Tensor


def energy_and_grad(energy_fn: Callable, x: tf.Tensor):
    """Per-sample energies ``(n,)`` and their input gradients (shape of ``x``)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        energy = energy_fn(x)
    return energy, tape.gradient(energy, x)


def sq_norm(v: tf.Tensor) -> tf.Tensor:
    """Squared Euclidean norm of each sample of a batch, shape ``(n,)``."""
    return tf.reduce_sum(tf.reshape(tf.square(v), [tf.shape(v)[0], -1]), axis=1)


class Kernel(keras.layers.Layer):
    """Base of every sampler: the kernel contract and Keras serialisation.

    Subclasses implement :meth:`one_step`, set :attr:`num_steps` (the default
    chain length of :func:`~deel_ebm.core.samplers.sample_chain`) and
    :attr:`jit_compile`, and keep ``get_config`` to their constructor arguments.
    A kernel that can serve as a Metropolis-Hastings proposal also implements
    :meth:`log_proposal_ratio`.
    """

    #: True when the kernel leaves its target exactly invariant (MH-corrected).
    is_calibrated = False
    num_steps: int
    jit_compile = "auto"

    def bootstrap(self, energy_fn: Callable, x0) -> ChainState:
        """The chain state at ``x0``: its energies, gradients and step 0."""
        x0 = tf.convert_to_tensor(x0, tf.float32)
        energy, grad = energy_and_grad(energy_fn, x0)
        return ChainState(x0, energy, grad, tf.constant(0))

    def one_step(self, energy_fn: Callable, state: ChainState, seed):
        """One transition: ``(new_state, StepResults)``; a pure function."""
        raise NotImplementedError

    def finalize(self, state: ChainState) -> ChainState:
        """The chains a run returns, from its last state (default: all of them;
        a kernel whose state holds auxiliary chains, e.g. the hot replicas of
        :class:`~deel_ebm.core.samplers.ReplicaExchange`, drops them)."""
        return state

    def adapt(self, results) -> None:
        """Tune the kernel after a training chain from its
        :class:`~deel_ebm.core.samplers.ChainResults` (default: nothing).

        ``EnergyModel.train_step`` calls it once per applied step, in graph mode.
        """

    def log_proposal_ratio(self, state, proposed, results) -> tf.Tensor:
        r""":math:`\log q(x \mid y) - \log q(y \mid x)` of the move ``x → y``."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot serve as a Metropolis-Hastings proposal"
        )

    def copy(self, **overrides) -> Kernel:
        """A new kernel with this one's configuration, some fields overridden.

        Example:
            >>> from deel_ebm.core.samplers import LangevinSampler
            >>> longer = LangevinSampler(step_size=1e-2).copy(num_steps=500)
            >>> longer.num_steps, round(float(longer.step_size.numpy()), 6)
            (500, 0.01)
        """
        config = self.get_config()
        config.pop("name", None)
        unknown = sorted(set(overrides) - set(config))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.copy got unknown fields {unknown}; it has "
                f"{sorted(k for k in config if k not in ('trainable', 'dtype'))}"
            )
        config.update(overrides)
        return type(self).from_config(config)

    def call(self, inputs):  # kernels have no forward pass
        return inputs
