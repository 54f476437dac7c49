"""A moving average of a model's weights, used after ``fit`` and trained past.

The likelihood's gradient is estimated from a few thousand draws, so the weights
fluctuate around a good solution from step to step (on a mixture, the masses of
separated modes swing). :class:`WeightAverage` keeps an exponential moving
average of the trainable variables, updated after every applied step with the
momentum ``min(momentum, t / (t + warmup))`` at step ``t`` (the first update
copies the weights: no bias toward the initialisation, as in TensorFlow's
``ExponentialMovingAverage(num_updates=...)``).

When ``fit`` ends, the average is swapped into the weights (``energy``,
``sample``, ``save`` and the exports use it) and the last iterate is kept; the
next ``fit`` swaps the iterate back and trains on from it. So a loop of short
``fit`` calls trains exactly as one long call, and the averaged density is what
the model holds between calls. Every variable (averages, kept iterate, which of
the two the weights hold) is saved with the model.
"""

from __future__ import annotations

from deel_ebm._backend import keras, tf

__all__ = ["WeightAverage", "DEFAULT_WARMUP"]

DEFAULT_WARMUP = 10.0


class _Targets:
    """The averaged variables, held out of Keras' tracking (the model owns them)."""

    def __init__(self, variables):
        self.variables = tuple(variables)


class WeightAverage(keras.layers.Layer):
    """Exponential moving average of ``variables`` with a warm-up.

    Args:
        momentum: the average's momentum once warmed up, in (0, 1).
        warmup: ``t / (t + warmup)`` caps the momentum at step ``t``.
    """

    def __init__(self, momentum: float, warmup: float = DEFAULT_WARMUP, **kwargs):
        super().__init__(**kwargs)
        self.momentum = float(momentum)
        self.warmup = float(warmup)
        self._targets = _Targets(())

    def track(self, variables) -> None:
        """Create the average and the kept iterate of each of ``variables``."""
        self._targets = _Targets(variables)

        def state(name, shape=(), dtype=tf.float32):
            return self.add_weight(
                name=name,
                shape=shape,
                dtype=dtype,
                initializer=keras.initializers.Zeros(),
                trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,  # replicas agree
            )

        def copies(prefix):
            return [
                state(f"{prefix}_{i}", v.shape, v.dtype)
                for i, v in enumerate(self._targets.variables)
            ]

        self.averages = copies("average")
        self.iterates = copies("iterate")
        self.swapped = state("swapped")
        self.update_count = state("update_count")
        self.built = True

    def update(self, step) -> None:
        """Fold the weights in after the update of step ``step`` (0, 1, ...)."""
        t = tf.cast(step, tf.float32)
        m = tf.minimum(self.momentum, t / (t + self.warmup))
        for average, v in zip(self.averages, self._targets.variables):
            average.assign(m * average + (1.0 - m) * tf.cast(v, average.dtype))
        self.update_count.assign_add(1.0)

    def swap_in(self) -> None:
        """Keep the iterate; put the average in the weights (eager). Nothing
        happens before the first update."""
        if self.swapped.numpy() or not self.update_count.numpy():
            return
        for v, average, kept in zip(
            self._targets.variables, self.averages, self.iterates
        ):
            kept.assign(v)
            v.assign(average)
        self.swapped.assign(1.0)

    def swap_out(self) -> None:
        """Put the kept iterate back in the weights, to train on (eager)."""
        if not self.swapped.numpy():
            return
        for v, kept in zip(self._targets.variables, self.iterates):
            v.assign(kept)
        self.swapped.assign(0.0)

    def call(self, inputs):  # holds variables only
        return inputs

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, warmup=self.warmup)
        return config
