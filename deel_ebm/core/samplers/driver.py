r"""One chain driver for every kernel: ``num_steps`` transitions in a while loop.

:func:`sample_chain` runs any :class:`~deel_ebm.core.samplers.Kernel` from a batch
of starting states and returns the final :class:`ChainState`, a summary of the run
(:class:`ChainResults`) and, with a ``trace_fn``, whatever that function records
at each step (as tensorflow-probability's ``sample_chain``). :func:`compile_chain`
wraps it in one ``tf.function``, XLA-compiled unless the kernel says otherwise;
every chain of the library (training, :meth:`EnergyModel.sample`, the exported
SavedModel) runs through these two functions.

Step ``t`` of a chain seeded ``s`` draws from ``fold_in(s, t)``: the same seed gives
the same chains.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from deel_ebm._backend import tf
from deel_ebm._checks import check_count
from deel_ebm.core.samplers.kernel import ChainState, Kernel, StepResults, sq_norm

__all__ = ["ChainResults", "ChainOutput", "sample_chain", "compile_chain", "trace_x"]


class ChainResults(NamedTuple):
    """Summary of one chain run (scalars).

    Attributes:
        grad_norm_mean: mean of ``‖∇E(x_t)‖`` over steps (the start included) and
            chains.
        grad_norm_max: largest ``‖∇E(x_t)‖`` met along the chains.
        acceptance_rate: share of accepted proposals (1 for unadjusted kernels).
        energy: mean energy of the final states.
    """

    grad_norm_mean: tf.Tensor
    grad_norm_max: tf.Tensor
    acceptance_rate: tf.Tensor
    energy: tf.Tensor


class ChainOutput(NamedTuple):
    """What :func:`sample_chain` returns.

    Attributes:
        state: the final :class:`~deel_ebm.core.samplers.ChainState`
            (``state.x`` holds the samples).
        results: a :class:`ChainResults`.
        trace: ``None`` without ``trace_fn``; else its values stacked over the
            ``num_steps`` transitions (leading axis ``num_steps``).
    """

    state: ChainState
    results: ChainResults
    trace: Any


def trace_x(state: ChainState, results) -> tf.Tensor:
    """A ``trace_fn`` recording the states: a trajectory ``(K, n, *shape)``."""
    return state.x


def sample_chain(
    kernel: Kernel,
    energy_fn: Callable,
    x0,
    seed,
    num_steps: int | None = None,
    trace_fn: Callable | None = None,
) -> ChainOutput:
    """Run ``kernel`` on ``energy_fn`` for ``num_steps`` steps from ``x0``.

    Args:
        kernel: a :class:`~deel_ebm.core.samplers.Kernel`.
        energy_fn: maps a batch ``(n, *shape)`` to energies ``(n,)``.
        x0: starting states ``(n, *shape)``.
        seed: a shape-[2] integer seed.
        num_steps: chain length (default ``kernel.num_steps``; 0 returns ``x0``).
        trace_fn: optional ``trace_fn(state, step_results)`` returning a tensor
            (or a nest of tensors) recorded after every transition.

    Returns:
        A :class:`ChainOutput` ``(state, results, trace)``.

    Example:
        >>> from deel_ebm.core.samplers import MALASampler, sample_chain, trace_x
        >>> energy = lambda x: 0.5 * tf.reduce_sum(x**2, axis=1)
        >>> out = sample_chain(MALASampler(num_steps=10, step_size=0.5), energy,
        ...                    tf.zeros([64, 2]), seed=[0, 1], trace_fn=trace_x)
        >>> out.trace.shape
        TensorShape([10, 64, 2])
    """
    if not isinstance(kernel, Kernel):
        raise TypeError(f"kernel must be a deel_ebm sampler kernel, got {kernel!r}")
    num_steps = (
        kernel.num_steps if num_steps is None else check_count("num_steps", num_steps)
    )
    seed = tf.cast(seed, tf.int64)
    state = kernel.bootstrap(energy_fn, x0)
    n = tf.cast(tf.shape(state.x)[0], tf.float32)
    norm0 = tf.sqrt(sq_norm(state.grad))
    traces = ()  # a while loop carries no None
    if trace_fn is not None:
        probe = StepResults(tf.ones_like(state.energy), tf.constant(1.0))
        example = trace_fn(state, probe)  # the structure of what is recorded
        traces = tf.nest.map_structure(
            lambda t: tf.TensorArray(t.dtype, size=num_steps, element_shape=t.shape),
            example,
        )

    def body(state, norm_sum, norm_max, acc_sum, traces):
        step_seed = tf.random.experimental.stateless_fold_in(seed, state.step)
        t = state.step
        state, results = kernel.one_step(energy_fn, state, step_seed)
        norm = tf.sqrt(sq_norm(state.grad))
        if trace_fn is not None:
            traces = tf.nest.map_structure(
                lambda ta, v: ta.write(t, v), traces, trace_fn(state, results)
            )
        return (
            state,
            norm_sum + tf.reduce_sum(norm),
            tf.maximum(norm_max, tf.reduce_max(norm)),
            acc_sum + tf.reduce_sum(results.accepted),
            traces,
        )

    init = (
        state,
        tf.reduce_sum(norm0),
        tf.reduce_max(norm0),
        tf.constant(0.0),
        traces,
    )
    state, norm_sum, norm_max, acc_sum, traces = tf.while_loop(
        lambda state, *_: state.step < num_steps,
        body,
        init,
        maximum_iterations=num_steps,
    )
    state = kernel.finalize(state)
    results = ChainResults(
        grad_norm_mean=norm_sum / (n * (num_steps + 1)),
        grad_norm_max=norm_max,
        acceptance_rate=acc_sum / (n * max(num_steps, 1)) if num_steps else 1.0,
        energy=tf.reduce_mean(state.energy),
    )
    trace = None
    if trace_fn is not None:
        trace = tf.nest.map_structure(lambda ta: ta.stack(), traces)
    return ChainOutput(state, results, trace)


def compile_chain(
    kernel: Kernel,
    energy_fn: Callable,
    num_steps: int | None = None,
    trace_fn: Callable | None = None,
):
    """A ``tf.function`` of ``(x0, seed, *context)`` running :func:`sample_chain`.

    XLA-compiled unless ``kernel.jit_compile`` is False; traced once per input
    shape. The kernel's ``tf.Variable`` hyper-parameters are read at run time, so
    changing a step size does not retrace. Tensors passed after ``seed`` go to
    the energy, ``energy_fn(x, *context)`` (e.g. the class labels of
    conditional chains).
    """
    jit = kernel.jit_compile != False  # noqa: E712  ("auto" and True)

    def chain(x0, seed, *context):
        def energy(x):
            return energy_fn(x, *context)

        return sample_chain(kernel, energy, x0, seed, num_steps, trace_fn)

    return tf.function(chain, jit_compile=jit)
