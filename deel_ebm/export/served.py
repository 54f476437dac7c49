r"""A TensorFlow SavedModel that serves energies and samples without deel-ebm.

:func:`export_saved_model` writes the plain network of
:func:`~deel_ebm.export.export_vanilla`, the sampler and the buffer's prior as
``tf.function`` signatures ``energy``, ``sample`` and ``sample_from``, loadable by
``tf.saved_model.load`` alone (no deel-ebm, deel-lip or Keras import needed to
serve it). The chains are those of :func:`~deel_ebm.core.samplers.sample_chain`
and the prior that of :func:`~deel_ebm.core.buffers.prior_sample`, traced into
plain TensorFlow ops. ``sample`` starts its chains from the buffer's prior: a
model trained with a proposal samples better with ``sample_from`` given starts
near the data (``model.sample(n, num_steps=0)`` gives resampled proposal draws).
"""

from __future__ import annotations

import os
from pathlib import Path

from deel_ebm._backend import tf
from deel_ebm._checks import check_count
from deel_ebm.core.buffers import prior_sample
from deel_ebm.core.samplers import sample_chain
from deel_ebm.export._common import check_model, check_path
from deel_ebm.export.plain import export_vanilla

__all__ = ["export_saved_model"]


class _ServedEnergy(tf.Module):
    """Energy and Langevin sampling on plain weights, for ``tf.saved_model``."""

    def __init__(self, model, plain, num_steps):
        super().__init__(name="deel_ebm_energy_model")
        sampler = model.sampler
        self.network = plain
        self.sampler = sampler.copy()
        self.k_coef_lip = tf.Variable(model.k_coef_lip, trainable=False)
        self.num_steps = tf.Variable(
            sampler.num_steps if num_steps is None else num_steps, trainable=False
        )
        self._steps = int(self.num_steps.numpy())
        self._shape = tuple(model.sample_shape)
        buffer = model.buffer
        self._prior = (buffer.prior, buffer.domain, buffer.prior_std)
        state_spec = tf.TensorSpec((None, *self._shape), tf.float32)
        seed_spec = tf.TensorSpec((2,), tf.int64, name="seed")
        self.energy = tf.function(self._energy, input_signature=[state_spec])
        self.sample = tf.function(
            self._sample, input_signature=[tf.TensorSpec((), tf.int32), seed_spec]
        )
        self.sample_from = tf.function(
            self._sample_from, input_signature=[state_spec, seed_spec]
        )

    def _energy(self, x):
        return self.network(x, training=False)

    def _prior_sample(self, n, seed):
        prior, domain, std = self._prior
        shape = tf.concat([[n], tf.constant(self._shape, tf.int32)], axis=0)
        return prior_sample(shape, seed, prior, domain, std)

    def _sample_from(self, init, seed):
        return sample_chain(self.sampler, self._energy, init, seed, self._steps).state.x

    def _sample(self, n, seed):
        prior_seed, chain_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, num=2)
        )
        return self._sample_from(self._prior_sample(n, prior_seed), chain_seed)


def export_saved_model(model, path, num_steps: int | None = None) -> Path:
    r"""Save a TensorFlow SavedModel that serves energies and samples.

    The SavedModel holds the plain network of :func:`export_vanilla` (constrained
    weights frozen at export), a copy of the sampler (its kind, current step size,
    noise scale, annealing and domain clip) and the buffer's prior. Load it with
    ``tf.saved_model.load(path)`` only; no deel-ebm, deel-lip or Keras import is
    needed. Functions of the loaded object (and serving signatures of the same
    names, returning dicts):

    - ``energy(x)``: ``x`` float32 ``(n, *sample_shape)`` → energies ``(n,)``
      (signature output ``"energy"``; also ``serving_default``);
    - ``sample(n, seed)``: ``n`` int32 scalar, ``seed`` int64 ``(2,)`` → samples
      ``(n, *sample_shape)``: ``num_steps`` Langevin steps from prior draws
      (output ``"samples"``);
    - ``sample_from(init, seed)``: the same chain from the states ``init``.

    The same ``seed`` gives the same samples. The loaded object's variables
    ``k_coef_lip`` and ``num_steps`` record the export's settings (both are
    compiled into the functions: assigning them changes nothing).

    Args:
        model: a :class:`~deel_ebm.EnergyModel`.
        path: directory to write (created; must not hold another SavedModel).
        num_steps: chain length of ``sample`` (default: the model sampler's).

    Returns:
        The path written.

    Raises:
        TypeError: if ``model`` is not an EnergyModel, ``path`` not a path or
            ``num_steps`` not an int.
        ValueError: for a negative ``num_steps``, a ``path`` that is a file or
            already holds a SavedModel, or a layer :func:`export_vanilla` cannot
            export.

    Example:
        >>> export_saved_model(model, "served")
        PosixPath('served')
        >>> served = tf.saved_model.load("served")        # in any TF program
        >>> served.energy(tf.zeros([4, 2])).shape
        TensorShape([4])
        >>> served.sample(tf.constant(100), tf.constant([0, 1], tf.int64)).shape
        TensorShape([100, 2])
    """
    check_model(model)
    path = check_path(path)
    num_steps = check_count("num_steps", num_steps, allow_none=True)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file, not a directory")
    if (path / "saved_model.pb").exists():
        raise ValueError(f"{str(path)!r} already holds a SavedModel")
    module = _ServedEnergy(model, export_vanilla(model), num_steps)
    signatures = {
        "serving_default": tf.function(
            lambda x: {"energy": module.energy(x)},
            input_signature=module.energy.input_signature,
        ),
        "sample": tf.function(
            lambda n, seed: {"samples": module.sample(n, seed)},
            input_signature=module.sample.input_signature,
        ),
        "sample_from": tf.function(
            lambda init, seed: {"samples": module.sample_from(init, seed)},
            input_signature=module.sample_from.input_signature,
        ),
    }
    signatures["energy"] = signatures["serving_default"]
    tf.saved_model.save(module, os.fspath(path), signatures=signatures)
    return path
