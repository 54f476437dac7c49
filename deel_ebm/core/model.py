r"""EnergyModel: a Keras model whose energy is ``k · f`` with ``f`` 1-Lipschitz.

The density is :math:`p(x) \propto e^{-E(x)}` with :math:`E(x) = k\,f(x)`. Training
is persistent contrastive divergence (PCD) inside ``train_step``::

    batch x+ ────────────────────────────────────────────────┐
    buffer ─draw starts, re-init a few─> chain (K Langevin steps on the cached
             constrained weights, compiled once) ─> x− ──────┼─> back to buffer
                                                             v
             loss(E(x+), E(x−)) with training=True ─> one optimizer step

Consequences of the Lipschitz energy that the code relies on: ``‖∇E‖ ≤ k``
everywhere, so a Langevin step moves at most ``η k`` by drift (no clipping), and
``|E(x) − E(y)| ≤ k ‖x − y‖`` certifies every score.

deel-lip layers cache their constrained kernel (``wbar``): ``training=True``
recomputes and writes it, ``training=False`` reads it. The chains read it; the
differentiated loss pass (``training=True``) recomputes it once per step. So the
chains of step t run on the weights the model had before the update of step
t − 1 (persistent chains always trail the model). :meth:`EnergyModel.energy`,
:meth:`EnergyModel.sample` and the exports refresh ``wbar`` first whenever an
update has happened since the last refresh.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings

import numpy as np

from deel_ebm import nets
from deel_ebm._backend import keras, tf
from deel_ebm._checks import check_samples
from deel_ebm.core import _distribute, checkpoints, gemm_forward, inputs
from deel_ebm.core import losses as losses_lib
from deel_ebm.core._random import categorical
from deel_ebm.core.averaging import WeightAverage
from deel_ebm.core.buffers import ReplayBuffer
from deel_ebm.core.proposals import (
    DEFAULT_NUM_NEGATIVES,
    MAX_FIT_POINTS,
    MixtureProposal,
)
from deel_ebm.core.samplers import Kernel, LangevinSampler, compile_chain, trace_x
from deel_ebm.core.walkers import JarzynskiWalkers

__all__ = [
    "EnergyModel",
    "default_k_coef_lip",
    "default_learn_k",
    "default_sampler",
    "default_base",
    "has_default_base",
    "MAX_BASE_DIM",
    "DEFAULT_BATCH_SIZE_CHAINS",
    "DEFAULT_BATCH_SIZE_PROPOSAL",
]

DEFAULT_WEIGHT_AVERAGE = 0.995
#: ``fit``'s default batch size when negatives come from chains / a proposal.
DEFAULT_BATCH_SIZE_CHAINS = 256
DEFAULT_BATCH_SIZE_PROPOSAL = 1024
# proposal draws per sample returned by sample() before resampling
_RESAMPLE_FACTOR = 8
# bounds the (n, components, d) intermediate of log q
_LOG_Q_CHUNK = 65536


#: the learned k of the low-dimension default: its start and its cap
LOW_DIM_K_START = 20.0
LOW_DIM_K_MAX = 80.0


def default_learn_k(sample_shape) -> bool:
    """Whether k is learned when it is not given: up to 8 dimensions (start 20,
    cap 80: on the 2D densities the learned k ends between 16 and 44)."""
    return nets.is_low_dimensional(sample_shape)


def default_k_coef_lip(sample_shape) -> float:
    """The default k: 40 up to 8 dimensions (20, learned, when k is not given:
    :func:`default_learn_k`), else ``max(40, d)``.

    A k-Lipschitz energy in ``d`` dimensions puts the mass of ``exp(−k·dist)`` at
    a distance of about ``d / k`` from the data: ``k ≈ d`` keeps it within about
    one unit of the data (``research/r2_digits_one_class``). In low dimension
    the cap is the sharpness ``k`` allows: 40 lets a checkerboard edge cost
    about 0.025 nats (``research/r1_2d_schemes``).
    """
    if nets.is_low_dimensional(sample_shape):
        return 40.0
    return float(max(40, int(np.prod(sample_shape))))


def default_sampler(sample_shape, k_coef_lip) -> LangevinSampler:
    """The default chains: ULA whose drift per step ``η k`` is 0.2 (≤ 8 dimensions,
    60 steps) or 0.02 (more dimensions, 40 steps; the noise ``√(2η)`` per
    coordinate then stays small against pixel scales)."""
    if nets.is_low_dimensional(sample_shape):
        return LangevinSampler(num_steps=60, step_size=0.2 / k_coef_lip)
    return LangevinSampler(num_steps=40, step_size=0.02 / k_coef_lip)


#: the most dimensions (flattened) in which a sampling base is fitted by default:
#: EM of a full-covariance mixture costs about ``50 n d²`` flops per iteration
#: (0.3 GFLOP on the 1 257 digits, 400 on 20 000 points of 256 dimensions)
MAX_BASE_DIM = 64


def default_base(sample_shape, domain, seed: int = 0) -> MixtureProposal | None:
    """The default start of the chains of :meth:`EnergyModel.sample` for a model
    trained with chains: a Gaussian mixture fitted to the data (50 components,
    covariances not inflated, no uniform part, fitted by the first ``fit``) in 9
    to :data:`MAX_BASE_DIM` dimensions, ``None`` (the buffer's prior) otherwise.

    On the 64-pixel digits, the default sampler's 40 ULA steps from uniform noise
    give noise (Fréchet digits distance 108); from the fitted mixture they give
    digits (1.10; the sklearn GaussianMixture chosen by BIC: 1.36, train vs test
    images: 0.48; ``benchmarks/bench_digits_samples.py``, 2026-12-05).
    """
    if not has_default_base(sample_shape):
        return None
    return MixtureProposal(inflate=1.0, uniform=0.0, domain=domain, seed=seed)


def has_default_base(sample_shape) -> bool:
    """Whether :func:`default_base` fits a base for samples of this shape (9 to
    :data:`MAX_BASE_DIM` dimensions)."""
    d = int(np.prod(tuple(sample_shape)))
    return not nets.is_low_dimensional(sample_shape) and d <= MAX_BASE_DIM


@keras.utils.register_keras_serializable(package="deel_ebm")
class EnergyModel(keras.Model):
    r"""Energy-based model :math:`p(x) \propto \exp(-k f(x))`.

    Two ways to estimate the likelihood's gradient at each step, both on the
    same model, loss and ``fit``:

    - **importance-sampled maximum likelihood** (``proposal``, the default up
      to 8 dimensions): negatives are draws of a tractable proposal ``q``
      fitted to the data, weighted by ``p/q`` (:mod:`deel_ebm.core.proposals`);
      no chain, and every region ``q`` covers is reweighted at every step;
    - **persistent contrastive divergence** (``proposal=None``, the default in
      more dimensions): negatives are Langevin chains started from a replay
      buffer.

    Args:
        network: a Keras network ``f`` mapping ``(n, *input_shape)`` to one scalar
            per sample (``(n,)`` or ``(n, 1)``). Build it from deel-lip layers
            (see :mod:`deel_ebm.nets`) for a certified 1-Lipschitz ``f``; other
            layers are allowed (ablations) and reported in
            :attr:`unconstrained_layers`.
        k_coef_lip: the constant ``k > 0``: energy ``E = k f`` is k-Lipschitz. It
            caps the sharpness of the density (a mode of width σ needs k of order
            distance / σ²) and the drift of one Langevin step (η k). Default:
            up to 8 dimensions, when ``learn_k`` is not given either, k is
            learned from 20 within 80; otherwise :func:`default_k_coef_lip`
            (40 up to 8 dimensions, else ``max(40, d)``).
        sampler: a sampler (:class:`~deel_ebm.samplers.LangevinSampler`,
            :class:`~deel_ebm.samplers.MALASampler`) for the training chains and
            :meth:`sample`; default: :func:`default_sampler`.
        buffer: a :class:`~deel_ebm.buffers.ReplayBuffer` (default: capacity
            10 000, 5 % re-init, uniform prior on (-1, 1)): the chains' starts.
        loss: ``"ml"`` (maximum likelihood, default), ``"cd"`` (contrastive
            divergence + L2 energy penalty), ``"hkr"`` (hinge-KR) or a loss
            object from :mod:`deel_ebm.losses`.
        proposal: ``"auto"`` (default: a
            :class:`~deel_ebm.core.proposals.MixtureProposal` up to 8 dimensions,
            else ``None``), a proposal, or ``None`` (train with chains). An
            unfitted proposal is fitted to the training data by the first
            :meth:`fit`.
        num_negatives: proposal draws per training step (default 4096).
        learn_k: make k a trained parameter, ``k = k_max · sigmoid(s)``,
            starting at ``k_coef_lip``. Default (``None``): learned when
            ``k_coef_lip`` is not given and the data have at most 8 dimensions
            (start 20, cap 80), else fixed. the energy stays certified
            ``k``-Lipschitz at every step (``k`` is :attr:`k_coef_lip`, read
            when needed) and never exceeds ``k_max``. The likelihood's gradient
            in ``k`` is ``mean f(data) − E_p[f]``: k grows until the model is as
            sharp as the data asks, within the cap.
        k_max: the cap of a learned k (default: 4 × the start).
        base: where the fresh chains of :meth:`sample` start: ``"auto"``
            (default: :func:`default_base`, a mixture fitted to the data, for a
            model trained with chains in 9 to 64 dimensions; else ``None``), a
            :class:`~deel_ebm.core.proposals.MixtureProposal`, or ``None`` (the
            buffer's prior). An unfitted base is fitted by the first :meth:`fit`.
            It changes training only through ``base_starts``.
        base_starts: share of the training chains that start from fresh draws
            of the base instead of the replay buffer, in ``[0, 1]`` (1: short-run
            chains from the fitted mixture at every step, the buffer is not
            read). ``None``: the class's default, :attr:`DEFAULT_BASE_STARTS`
            (0 for an EnergyModel, 1 for a
            :class:`~deel_ebm.core.joint.JointEnergyModel`), or 0 when the
            model has no base. Only chains use it (not a proposal or walkers).
        weight_average: momentum of a moving average of the weights
            (:class:`~deel_ebm.core.averaging.WeightAverage`, with a warm-up):
            ``fit`` swaps it into the weights when it ends, and the next ``fit``
            trains on from the last iterate. The likelihood's gradient is
            estimated from a few thousand draws, so the weights (and the masses
            of separated modes) fluctuate from step to step; the average is the
            better density. ``None``: off; off too when the optimizer averages
            itself (Keras' ``use_ema``).
        input_shape: shape of one sample; needed only when ``network`` is not
            built.
        seed: seed of every random draw of training and sampling: a seeded run is
            reproducible on CPU, across processes too when the network's own
            initialisation is seeded: the builders of :mod:`deel_ebm.nets` seed
            it; deel-lip's own defaults are unseeded, so seed a network built by
            hand with ``tf.keras.utils.set_random_seed`` before building it, or
            give it seeded initializers and call
            :func:`~deel_ebm.nets.seed_power_iterations` after.

    Raises:
        ValueError: when ``network`` does not give one scalar per sample, on a
            non-positive ``k_coef_lip`` or an unknown loss.

    Example:
        >>> x_train, _ = deel_ebm.datasets.load_2d("8gaussians", 1024, 10)
        >>> net = deel_ebm.nets.lipschitz_mlp(input_shape=(2,), units=(64, 64))
        >>> model = deel_ebm.EnergyModel(
        ...     net, k_coef_lip=10.0,
        ...     buffer=deel_ebm.ReplayBuffer(capacity=1000, domain=(-4.5, 4.5)))
        >>> model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
        >>> history = model.fit(x_train, batch_size=256, epochs=1, verbose=0)
        >>> x = model.sample(100)
        >>> x.shape, model.energy(x).shape
        (TensorShape([100, 2]), TensorShape([100]))
    """

    #: share of training chains started from the base when ``base_starts`` is None
    DEFAULT_BASE_STARTS = 0.0

    def __init__(
        self,
        network,
        k_coef_lip: float | None = None,
        sampler: Kernel | None = None,
        buffer: ReplayBuffer | None = None,
        loss=None,
        input_shape=None,
        seed: int = 0,
        proposal="auto",
        num_negatives: int = DEFAULT_NUM_NEGATIVES,
        learn_k: bool | None = None,
        k_max: float | None = None,
        weight_average: float | None = DEFAULT_WEIGHT_AVERAGE,
        walkers: JarzynskiWalkers | None = None,
        base="auto",
        base_starts: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(network, keras.layers.Layer):
            raise TypeError(f"network must be a Keras model or layer, got {network!r}")
        self.network = network
        self.sample_shape = self._infer_sample_shape(input_shape)
        if learn_k is None:  # learned by default when k is not given (low dim)
            learn_k = k_coef_lip is None and default_learn_k(self.sample_shape)
            if learn_k and k_coef_lip is None:
                k_coef_lip = LOW_DIM_K_START
                k_max = LOW_DIM_K_MAX if k_max is None else k_max
        if k_coef_lip is None:
            k_coef_lip = default_k_coef_lip(self.sample_shape)
        if isinstance(k_coef_lip, bool) or not isinstance(k_coef_lip, numbers.Real):
            raise TypeError(f"k_coef_lip must be a number, got {k_coef_lip!r}")
        if not (math.isfinite(k_coef_lip) and k_coef_lip > 0):
            raise ValueError(
                f"k_coef_lip must be positive and finite, got {k_coef_lip}"
            )
        if sampler is not None and not isinstance(sampler, Kernel):
            raise TypeError(f"sampler must be a deel_ebm sampler, got {sampler!r}")
        if buffer is not None and not isinstance(buffer, ReplayBuffer):
            raise TypeError(f"buffer must be a deel_ebm ReplayBuffer, got {buffer!r}")
        self.learn_k = bool(learn_k)
        self.k_max = None
        if self.learn_k:
            k_max = 4.0 * float(k_coef_lip) if k_max is None else k_max
            if isinstance(k_max, bool) or not isinstance(k_max, numbers.Real):
                raise TypeError(f"k_max must be a number, got {k_max!r}")
            if not (math.isfinite(k_max) and k_max > k_coef_lip):
                raise ValueError(
                    f"k_max must be finite and above k_coef_lip={k_coef_lip}, "
                    f"got {k_max}"
                )
            self.k_max = float(k_max)
            ratio = float(k_coef_lip) / self.k_max
            self._k_logit = self.add_weight(
                name="k_logit",
                shape=(),
                initializer=keras.initializers.Constant(math.log(ratio / (1 - ratio))),
                trainable=True,
            )
        elif k_max is not None:
            raise ValueError("k_max is the cap of a learned k: pass learn_k=True")
        self._k_fixed = float(k_coef_lip)
        if weight_average is not None:
            if isinstance(weight_average, bool) or not isinstance(
                weight_average, numbers.Real
            ):
                raise TypeError(
                    f"weight_average must be a number or None, got {weight_average!r}"
                )
            if not 0.0 < weight_average < 1.0:
                raise ValueError(
                    f"weight_average must lie in (0, 1) or be None, got "
                    f"{weight_average}"
                )
            weight_average = float(weight_average)
        self.weight_average = weight_average
        if sampler is None:
            sampler = default_sampler(self.sample_shape, self._k_fixed)
        self.sampler = sampler
        self.buffer = buffer if buffer is not None else ReplayBuffer()
        self.energy_loss = losses_lib.get(loss)
        self.seed = int(seed)
        if walkers is not None and not isinstance(walkers, JarzynskiWalkers):
            raise TypeError(f"walkers must be JarzynskiWalkers, got {walkers!r}")
        if walkers is not None and proposal is not None and proposal != "auto":
            raise ValueError("pass a proposal or walkers, not both")
        self.walkers = walkers
        self.proposal = None if walkers else self._resolve_proposal(proposal)
        if walkers is not None:
            self._check_walker_sampler()
        self.base = self._resolve_base(base)
        self.base_starts = self._resolve_base_starts(base_starts)
        if isinstance(num_negatives, bool) or not isinstance(
            num_negatives, numbers.Integral
        ):
            raise TypeError(f"num_negatives must be an integer, got {num_negatives!r}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be positive, got {num_negatives}")
        self.num_negatives = int(num_negatives)
        self._check_scalar_output()
        self.averaging = None  # after the network is built: its weights exist
        if self.weight_average is not None:
            self.averaging = WeightAverage(self.weight_average, name="weight_average")
            self.averaging.track(self.trainable_variables)
        self._averaging_on = False
        self.buffer.build((None, *self.sample_shape))
        if self.proposal is not None and not self.proposal.built:
            self.proposal.build((None, *self.sample_shape))
        if self.walkers is not None and not self.walkers.built:
            self.walkers.build((None, *self.sample_shape))
        if self.base is not None and not self.base.built:
            self.base.build((None, *self.sample_shape))
        self.unconstrained_layers = self._find_unconstrained_layers()
        if self.unconstrained_layers:
            warnings.warn(
                "EnergyModel: the network has layers that are not deel-lip "
                f"Lipschitz layers: {self.unconstrained_layers}. Its energy is not "
                f"certified {self.k_coef_lip}-Lipschitz (fine for an ablation).",
                stacklevel=2,
            )
        # runtime state, saved with the model
        self._stale = tf.Variable(True, trainable=False, name="constraints_stale")
        self._sample_calls = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="sample_calls"
        )
        self._chains = _FunctionCache()
        self.stop_reason = None
        names = ("loss", "energy_gap", "e_pos", "e_neg")
        weighted = self.proposal is not None or self.walkers is not None
        names += ("ess",) if weighted else ("grad_norm",)
        names += self._extra_metric_names()
        self._trackers = {n: _distribute.Mean(name=n) for n in names}
        self.refresh_constraints()
        # inference passes (chains, energy) with convolutions as GEMMs, when the
        # network allows it and agrees with its own call (gemm_forward)
        self._chains.inference = gemm_forward.inference_forward(
            self.network, self.sample_shape
        )
        self.built = True  # every variable exists (BackupAndRestore checks it)

    # ------------------------------------------------------------ construction
    def _infer_sample_shape(self, input_shape):
        if input_shape is not None:
            shape = tuple(input_shape)
        else:
            try:
                shape = tuple(self.network.input_shape[1:])
            except (AttributeError, RuntimeError) as err:
                raise ValueError(
                    "the network is not built: build it (e.g. start it with "
                    "keras.layers.Input) or pass input_shape=..."
                ) from err
        if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
            raise ValueError(f"the sample shape must be known and positive: {shape}")
        return shape

    def _resolve_proposal(self, proposal):
        if isinstance(proposal, str):
            if proposal != "auto":
                raise ValueError(
                    f"proposal must be 'auto', None or a proposal, got {proposal!r}"
                )
            if not nets.is_low_dimensional(self.sample_shape):
                return None
            return MixtureProposal(seed=self.seed)
        if proposal is not None and not isinstance(proposal, MixtureProposal):
            raise TypeError(
                f"proposal must be 'auto', None or a MixtureProposal, got {proposal!r}"
            )
        if proposal is not None and proposal.built:
            if tuple(proposal.sample_shape) != self.sample_shape:
                raise ValueError(
                    f"the proposal was built for samples of shape "
                    f"{proposal.sample_shape}, the network expects {self.sample_shape}"
                )
        return proposal

    def _resolve_base_starts(self, base_starts):
        if base_starts is None:
            return self.DEFAULT_BASE_STARTS if self.base is not None else 0.0
        if isinstance(base_starts, bool) or not isinstance(base_starts, numbers.Real):
            raise TypeError(f"base_starts must be a number, got {base_starts!r}")
        if not 0.0 <= base_starts <= 1.0:
            raise ValueError(f"base_starts must lie in [0, 1], got {base_starts}")
        if base_starts > 0 and self.base is None:
            raise ValueError(
                "base_starts > 0 starts chains from the base, and the model has "
                "none: pass base='auto' (9 to 64 dimensions) or a MixtureProposal"
            )
        return float(base_starts)

    def _resolve_base(self, base):
        if isinstance(base, str):
            if base != "auto":
                raise ValueError(
                    f"base must be 'auto', None or a MixtureProposal, got {base!r}"
                )
            if self.proposal is not None or self.walkers is not None:
                return None  # sample() starts from the proposal or the walkers
            return default_base(self.sample_shape, self.buffer.domain, self.seed)
        if base is not None and not isinstance(base, MixtureProposal):
            raise TypeError(
                f"base must be 'auto', None or a MixtureProposal, got {base!r}"
            )
        if base is not None and base.built:
            if tuple(base.sample_shape) != self.sample_shape:
                raise ValueError(
                    f"the base was built for samples of shape {base.sample_shape}, "
                    f"the network expects {self.sample_shape}"
                )
        return base

    def _unfitted_mixtures(self):
        """The proposal and the base when they still need fitting to the data."""
        return [
            q for q in (self.proposal, self.base) if q is not None and not q.is_fitted
        ]

    def _check_walker_sampler(self):
        """Weighted walkers need Langevin moves whose importance weight is known:
        an exact kernel, or proper unannealed Langevin dynamics."""
        sampler = self.sampler
        if sampler.is_calibrated:
            return
        noise = getattr(sampler, "noise_scale", None)
        tempered = getattr(sampler, "init_temperature", 1.0) != 1.0
        if noise is None or float(noise.numpy()) != 1.0 or tempered:
            raise ValueError(
                "Jarzynski walkers weight proper Langevin moves of the model: use "
                "a LangevinSampler with noise_scale=1 and init_temperature=1, or "
                "an exact kernel (MALASampler)"
            )
        try:
            type(sampler).log_proposal_ratio  # noqa: B018
        except AttributeError as err:  # pragma: no cover - every kernel has it
            raise ValueError("the sampler cannot weight its moves") from err

    @property
    def uses_proposal(self) -> bool:
        """True when training negatives are importance-weighted proposal draws."""
        return self.proposal is not None

    def _extra_metric_names(self) -> tuple:
        """Names of the trackers a subclass adds (the ``extras`` of
        :meth:`_loss_terms`)."""
        return ()

    def _check_scalar_output(self):
        out = self.network(tf.zeros((2, *self.sample_shape)), training=False)
        if tuple(out.shape) not in ((2,), (2, 1)):
            raise ValueError(
                "the network must return one scalar per sample, shape (n,) or (n, 1);"
                f" it returns {tuple(out.shape[1:])} per sample"
            )

    def _find_unconstrained_layers(self):
        return nets.unconstrained_layers(self.network)

    @property
    def is_lipschitz(self) -> bool:
        """True when every layer is a deel-lip Lipschitz layer (energy certified)."""
        return not self.unconstrained_layers

    @property
    def metrics(self):
        return list(self._trackers.values())

    # ------------------------------------------------------------------ energy
    def call(self, inputs, training=False):
        """Energies ``(n,)`` of a batch; ``training=True`` recomputes ``wbar``."""
        out = self._network_output(inputs, training)
        return tf.cast(self.k_tensor(), out.dtype) * tf.reshape(out, [-1])

    @property
    def gemm_convolutions(self) -> bool:
        """Whether inference passes (chains, :meth:`energy`, sampling) run the
        network's convolutions as matrix products of their patches
        (:mod:`deel_ebm.core.gemm_forward`: the same function, faster in XLA on
        CPU). True when the network allows it; set False to run the network's
        own call instead."""
        return self._chains.inference is not None

    @gemm_convolutions.setter
    def gemm_convolutions(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"gemm_convolutions must be True or False, got {value!r}")
        if value == self.gemm_convolutions:
            return
        fast = None
        if value:
            fast = gemm_forward.inference_forward(self.network, self.sample_shape)
            if fast is None:
                raise ValueError(
                    "gemm_convolutions=True needs a Sequential network with plain "
                    "stride-1 convolutions that the GEMM pass reproduces"
                )
        self._chains.inference = fast
        # compiled chains and Keras' step functions captured the old pass
        self._chains.functions.clear()
        self.train_function = self.test_function = self.predict_function = None

    def _network_output(self, inputs, training):
        """``network(inputs, training)``; at inference the GEMM pass if built."""
        fast = None if training else self._chains.inference
        if fast is None:
            return self.network(inputs, training=training)
        return fast(inputs)

    def k_tensor(self) -> tf.Tensor:
        """The current k as a tensor (differentiable when learned)."""
        if self.learn_k:
            return self.k_max * tf.sigmoid(self._k_logit)
        return tf.constant(self._k_fixed, tf.float32)

    @property
    def k_coef_lip(self) -> float:
        """The energy's Lipschitz constant now: ``E = k f`` is k-Lipschitz."""
        if self.learn_k:
            return float(self.k_tensor().numpy())
        return self._k_fixed

    def _cached_energy(self, x):
        return self(x, training=False)

    def refresh_constraints(self) -> None:
        """Recompute every deel-lip layer's cached constrained kernel (``wbar``).

        Only the deel-lip layers run (in training mode, alone): other layers
        (Dropout, BatchNormalization in an ablation) are left untouched.
        """
        nets.refresh_constrained_kernels(self.network)
        self._stale.assign(False)

    def _ensure_fresh(self):
        if bool(self._stale.numpy()):
            self.refresh_constraints()

    def energy(self, x, batch_size: int | None = None) -> tf.Tensor:
        """Energies ``E(x) = k f(x)`` of a batch, shape ``(n,)``.

        ``-energy`` is the unnormalised log-density. The result is a tensor that a
        ``tf.GradientTape`` can differentiate. Large inputs are split into
        batches of ``batch_size`` (default: all at once).
        """
        return self._batched(self._cached_energy, x, batch_size)

    def _batched(self, fn, x, batch_size):
        """``fn`` on checked ``x`` with fresh constraints, in batches of
        ``batch_size`` (all at once when ``None``)."""
        self._ensure_fresh()
        x = self._check_array(x, "x", allow_empty=True)
        if batch_size is None or x.shape[0] <= batch_size:
            return fn(x)
        starts = range(0, x.shape[0], batch_size)
        return tf.concat([fn(x[i : i + batch_size]) for i in starts], axis=0)

    # ---------------------------------------------------------------- sampling
    def _chain(self, sampler, num_steps=None, return_trajectory=False, energy=None):
        """The compiled chain of ``sampler`` on ``energy`` (default: the model's
        energy on the cached weights; a method of the model taking extra tensors,
        such as a joint model's conditional energy), cached."""
        energy = self._cached_energy if energy is None else energy
        key = (id(sampler), num_steps, return_trajectory, energy.__name__)
        if key not in self._chains.functions:
            trace_fn = trace_x if return_trajectory else None
            self._chains.functions[key] = compile_chain(
                sampler, energy, num_steps, trace_fn
            )
        return self._chains.functions[key]

    def sample(
        self,
        n: int,
        num_steps: int | None = None,
        init=None,
        return_trajectory: bool = False,
        sampler: Kernel | None = None,
        seed=None,
        return_results: bool = False,
    ):
        """Draw ``n`` samples of the learned density by running chains.

        Args:
            n: number of samples.
            num_steps: chain length (default: the sampler's).
            init: ``None`` (with a fitted proposal: its draws, resampled by
                their importance weights ``p/q``; with trained Jarzynski walkers:
                the walkers, resampled by their weights; with a fitted
                :attr:`base`: its draws; otherwise draws of the buffer's prior),
                ``"prior"`` (draws of the buffer's prior), ``"buffer"``
                (persistent states, at most ``capacity``) or an array
                ``(n, *sample_shape)``.
            return_trajectory: also return the states ``(K + 1, n, *shape)``.
            sampler: another sampler for this call, e.g. a
                :class:`~deel_ebm.samplers.MALASampler` for exact sampling.
            seed: an int; by default each call uses the next seed of the model.
            return_results: also return the chains'
                :class:`~deel_ebm.core.samplers.ChainResults` (acceptance rate,
                final energies), last.

        Returns:
            samples ``(n, *sample_shape)``, then the trajectory and the results
            if asked.
        """
        sampler, seeds = self._next_sample_seeds(n, sampler, seed)
        x0 = self._chain_starts(n, init, seeds[0])
        out = self._chain(sampler, num_steps, return_trajectory)(x0, seeds[1])
        return self._sample_outputs(x0, out, return_trajectory, return_results)

    def _next_sample_seeds(self, n, sampler, seed):
        """``(sampler, seeds)`` of one :meth:`sample` call: ``n`` and the sampler
        checked, two seeds (starts, chain) drawn from ``seed`` or the model's
        counter."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        sampler = self.sampler if sampler is None else sampler
        if not isinstance(sampler, Kernel):
            raise TypeError(f"sampler must be a deel_ebm sampler, got {sampler!r}")
        self._ensure_fresh()
        if seed is None:  # a counter saved with the model: load, then continue
            seed = int(self._sample_calls.assign_add(1).numpy())
        seeds = tf.random.experimental.stateless_split(
            tf.constant([self.seed, -int(seed) - 1], tf.int64), num=2
        )
        return sampler, seeds

    @staticmethod
    def _sample_outputs(x0, out, return_trajectory, return_results):
        returned = [out.state.x]
        if return_trajectory:
            returned.append(tf.concat([x0[None], out.trace], axis=0))
        if return_results:
            returned.append(out.results)
        return returned[0] if len(returned) == 1 else tuple(returned)

    def _chain_starts(self, n, init, seed):
        """The ``n`` starting states of :meth:`sample` for ``init``."""
        if init is None and self._proposal_ready():
            x0 = self._resampled_proposal(int(n), seed)
        elif init is None and self._walkers_ready():
            picks = categorical(self.walkers.log_weights, int(n), seed)
            x0 = tf.gather(self.walkers.x, picks)
        elif init is None and self.base is not None and self.base.is_fitted:
            x0 = self.base.sample(int(n), seed)
        elif init is None or (isinstance(init, str) and init == "prior"):
            x0 = self.buffer.prior_sample(int(n), seed)
        elif isinstance(init, str) and init == "buffer":
            x0, _ = self.buffer.draw(int(n), seed)
        else:
            x0 = self._check_array(init, "init")
            if x0.shape[0] != n:
                raise ValueError(f"init has {x0.shape[0]} states, n is {n}")
        return x0

    def _walkers_ready(self):
        return self.walkers is not None and bool(self.walkers.started.numpy() > 0)

    def _proposal_ready(self):
        return self.proposal is not None and self.proposal.is_fitted

    def _resampled_proposal(self, n, seed):
        """``n`` proposal draws resampled by their weights (sampling-importance-
        resampling): already distributed close to the model before any chain."""
        draw_seed, pick_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
        )
        x, log_q = self._draws_of(self.proposal, _RESAMPLE_FACTOR * n, draw_seed)
        log_w = -self.energy(x, batch_size=_LOG_Q_CHUNK) - log_q
        picks = categorical(log_w, n, pick_seed)
        return tf.gather(x, picks)

    @staticmethod
    def _draws_of(mixture, m, seed):
        """``m`` draws of a fitted mixture and their ``log q`` (in chunks)."""
        x = mixture.sample(m, seed)
        parts = [
            mixture.log_prob(x[i : i + _LOG_Q_CHUNK]) for i in range(0, m, _LOG_Q_CHUNK)
        ]
        return x, tf.concat(parts, axis=0)

    # ---------------------------------------------------------------- training
    def _step_seeds(self, offset=0):
        step = tf.cast(self.optimizer.iterations, tf.int64)
        base = tf.stack([tf.constant(self.seed + offset, tf.int64), step])
        return tf.unstack(tf.random.experimental.stateless_split(base, num=2))

    def _positives(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise TypeError(f"training data must be floating point, got {x.dtype}")
        x = tf.cast(x, tf.float32)
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"data samples have shape {tuple(x.shape[1:])}, the network expects "
                f"{self.sample_shape}"
            )
        return tf.debugging.assert_all_finite(
            x, "the training data contain NaN or Inf values"
        )

    def _negatives(self, batch_size, seed):
        # under a strategy: this replica's shard of the buffer, its own seeds
        shard = _distribute.replica_shard()
        if shard is None:
            capacity, message = self.buffer.capacity, "buffer capacity"
        else:
            capacity = self.buffer.shard_capacity(shard[1])
            message = f"replica's buffer shard ({shard[1]} replicas), of capacity"
            seed = _distribute.replica_seed(seed)
        tf.debugging.assert_less_equal(
            batch_size,
            capacity,
            message=f"batch size exceeds the {message} {capacity}",
        )
        buffer_seed, chain_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, num=2)
        )
        x0, slots = self.buffer.draw(batch_size, buffer_seed, shard=shard)
        if self.base_starts > 0:
            x0 = self._base_starts(x0, buffer_seed)
        out = self._chain(self.sampler)(x0, chain_seed)
        return tf.stop_gradient(out.state.x), slots, out.results

    def _base_starts(self, x0, seed):
        """``x0`` with a share :attr:`base_starts` of its rows replaced by fresh
        draws of the base (all of them at 1)."""
        fitted = tf.debugging.assert_positive(
            self.base.fitted,
            message="the base is not fitted: fit the model on arrays or a "
            "tf.data.Dataset, or call model.base.fit(x_train) first",
        )
        draw_seed, pick_seed = tf.unstack(
            tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(seed, 1), num=2
            )
        )
        n = tf.shape(x0)[0]
        with tf.control_dependencies([fitted]):
            fresh = tf.cast(self.base.sample(n, draw_seed), x0.dtype)
        if self.base_starts >= 1.0:
            return fresh
        pick = tf.random.stateless_uniform([n], pick_seed) < self.base_starts
        return tf.where(tf.reshape(pick, [-1] + [1] * (x0.shape.rank - 1)), fresh, x0)

    def _proposal_negatives(self, seed):
        """Importance-sampling negatives: proposal draws and their ``log q``."""
        seed = _distribute.replica_seed(seed)
        fitted = tf.debugging.assert_positive(
            self.proposal.fitted,
            message="the proposal is not fitted: fit the model on arrays or a "
            "tf.data.Dataset, or call model.proposal.fit(x_train) first",
        )
        with tf.control_dependencies([fitted]):
            x_neg = self.proposal.sample(self.num_negatives, seed)
        return x_neg, self.proposal.log_prob(x_neg, draws=self.num_negatives)

    def _walker_negatives(self, seed):
        """Jarzynski walkers moved by the sampler; ``log_q`` makes the loss weight
        them by ``softmax(A + E_chain - E)``: their log-weights, carried to the
        parameters of this step."""
        if _distribute.is_distributed():
            raise NotImplementedError(
                "Jarzynski walkers do not run under a tf.distribute strategy yet"
            )
        x, log_w, e_chain, ess, resampled = self.walkers.advance(
            self._cached_energy, self.sampler, self.buffer.domain, seed
        )
        self._walker_update = (x, log_w, e_chain, resampled)
        return x, -e_chain - log_w

    def _training_negatives(self, batch_size, seed):
        """``(x_neg, log_q, slots, results)``: proposal draws with their ``log q``
        (no slots, no chain results), or chain states (``log_q`` None)."""
        if self.walkers is not None:
            x_neg, log_q = self._walker_negatives(seed)
            return x_neg, log_q, None, None
        if self.proposal is not None:
            x_neg, log_q = self._proposal_negatives(seed)
            return x_neg, log_q, None, None
        x_neg, slots, results = self._negatives(batch_size, seed)
        return x_neg, None, slots, results

    def _after_update(self):
        """Runs after each applied optimizer step (in every replica)."""
        if self._averaging_on:
            self.averaging.update(self.optimizer.iterations - 1)

    def _update_trackers(self, loss, e_pos, e_neg, results, log_q=None, extras=None):
        mean_pos, mean_neg = tf.reduce_mean(e_pos), tf.reduce_mean(e_neg)
        values = {
            "loss": loss,
            "energy_gap": mean_neg - mean_pos,
            "e_pos": mean_pos,
            "e_neg": mean_neg,
            **(extras or {}),
        }
        if results is not None:
            values["grad_norm"] = results.grad_norm_mean
        if "ess" in self._trackers:  # effective sample size / number of draws
            weights = losses_lib.negative_weights(e_neg, log_q)
            m = tf.cast(tf.shape(e_neg)[0], tf.float32)
            values["ess"] = 1.0 / tf.reduce_sum(tf.square(weights)) / m
        for name, value in values.items():
            self._trackers[name].update_state(value)
        logs = {name: t.result() for name, t in self._trackers.items()}
        if results is not None and self.sampler.is_calibrated:
            # the last batch's (not a tracker: saved models keep their metrics)
            logs["acceptance"] = results.acceptance_rate
        return logs

    def train_step(self, data):
        x_pos = self._positives(data)
        batch_size = tf.shape(x_pos)[0]
        seed, _ = self._step_seeds()
        x_neg, log_q, slots, results = self._training_negatives(batch_size, seed)
        chains = results is not None  # chain states go back to the buffer
        # the constraint's recomputation does not depend on x_neg: without this
        # dependency TF runs it concurrently with the chain, and on a few CPU cores
        # the two fight for the same threads
        with tf.control_dependencies([x_neg]), tf.GradientTape() as tape:
            loss, e_pos, e_neg, extras = self._loss_terms(
                data, x_pos, x_neg, log_q, training=True
            )
            if self.losses:
                loss += tf.add_n(self.losses)
            scaled_loss = _distribute.scale_loss(loss)  # loss itself on one device
        variables = self.trainable_variables
        grads = tape.gradient(scaled_loss, variables)
        finite = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
            + [tf.math.is_finite(loss), tf.reduce_all(tf.math.is_finite(x_neg))]
        )
        if _distribute.is_distributed():  # all replicas apply the step, or none
            _distribute.apply_if_finite(
                self.optimizer,
                grads,
                variables,
                finite,
                self.buffer if chains else None,
                slots,
                x_neg,
                on_applied=self._after_update,
            )
        else:

            def apply():
                # a non-finite step changes nothing: weights, optimizer, buffer stay
                self.optimizer.apply_gradients(zip(grads, variables))
                self._after_update()
                if self.walkers is not None:
                    self.walkers.commit(*self._walker_update)
                if chains:
                    self.buffer.write(slots, x_neg)
                    self.sampler.adapt(results)
                return tf.constant(True)

            tf.cond(finite, apply, lambda: tf.constant(False))
        self._stale.assign(True)
        return self._update_trackers(loss, e_pos, e_neg, results, log_q, extras)

    def test_step(self, data):
        x_pos = self._positives(data)
        batch_size = tf.shape(x_pos)[0]
        _, seed = self._step_seeds(offset=1)
        # refresh wbar after the last update; every other layer in inference mode
        nets.refresh_constrained_kernels(self.network)
        x_neg, log_q, _, results = self._training_negatives(batch_size, seed)
        loss, e_pos, e_neg, extras = self._loss_terms(
            data, x_pos, x_neg, log_q, training=False
        )
        return self._update_trackers(loss, e_pos, e_neg, results, log_q, extras)

    def _loss_terms(self, data, x_pos, x_neg, log_q, training):
        """``(loss, e_pos, e_neg, extras)`` of one batch: the energy loss on the
        energies of data and negatives (one pass of the network over both), and
        ``extras``, further values for the trackers (none here; a subclass adds
        its own terms and metrics)."""
        n = tf.shape(x_pos)[0]
        energies = self(tf.concat([x_pos, x_neg], axis=0), training=training)
        e_pos, e_neg = energies[:n], energies[n:]
        return self.energy_loss(e_pos, e_neg, log_q=log_q), e_pos, e_neg, {}

    # ------------------------------------------------------------ validation
    def _check_array(self, x, name, allow_empty=False, as_tensor=True):
        """``x`` checked; a float32 tensor, or (``as_tensor=False``) a NumPy array.

        A float32 NumPy array is not copied with ``as_tensor=False``.
        """
        if isinstance(x, (tf.Tensor, tf.Variable)):  # keep it: a tape may watch it
            if not x.dtype.is_floating:
                raise TypeError(f"{name} must be floating point, got {x.dtype}")
            if tuple(x.shape[1:]) != self.sample_shape:
                raise ValueError(
                    f"{name} must have shape (n, "
                    f"{', '.join(map(str, self.sample_shape))}), got {tuple(x.shape)}"
                )
            return tf.cast(x, tf.float32)
        x = check_samples(
            x,
            name,
            self.sample_shape,
            dtype=np.float32,
            allow_empty=allow_empty,
            require_float=True,
        )
        return tf.convert_to_tensor(x) if as_tensor else x

    def fit(self, x=None, y=None, batch_size=None, epochs=1, **kwargs):
        """``keras.Model.fit`` with checked input and an exactly resumable run.

        Numpy inputs (and ``validation_data``) are checked for shape, dtype and
        finite values; ``batch_size`` must not exceed the buffer's capacity.
        They are fed by :func:`~deel_ebm.core.inputs.arrays_as_dataset`: epoch
        ``e`` visits the samples in an order drawn from ``(seed, e)`` (in their
        order with ``shuffle=False``); the arrays are read where they are, never
        copied nor put in the graph, whatever their size (``float64`` input is
        converted to ``float32`` once). With the stateless training step, a run
        resumed by ``keras.callbacks.BackupAndRestore`` (any ``save_freq``), or
        restored by :func:`~deel_ebm.core.checkpoints.restore_checkpoint` and
        continued with ``fit(initial_epoch=...)``, ends bit for bit (CPU) with
        the weights and buffer of the uninterrupted run. Exceptions:
        ``sample_weight``, ``class_weight`` or ``steps_per_epoch`` leave the
        batching to Keras, whose shuffle restarts at each call and which holds a
        copy of the arrays; a ``tf.data`` input resumes exactly only
        if each epoch's order depends on the epoch alone and backups are per
        epoch. Each ``BackupAndRestore`` backup is first verified and restored
        all-or-nothing (:func:`~deel_ebm.core.checkpoints.check_backups`).

        A non-finite step is not applied; training then stops with a message in
        :attr:`stop_reason`, keeping the last good weights, optimizer and buffer.

        Under a ``tf.distribute`` strategy (model built and compiled in
        ``strategy.scope()``), ``batch_size`` is the global batch, split among
        the replicas; each replica runs its chains on its own shard of the replay
        buffer (user guide, "Training on several devices"). The capacity
        must then be a multiple of the number of replicas (a replica's share of
        a batch then fits in its shard), and the last batch must give every
        replica a sample. Numpy inputs are then shuffled afresh by each ``fit``
        call (:func:`~deel_ebm.core.inputs.shuffled_dataset`: no exact resume);
        under a multi-worker strategy Keras batches them itself, from a copy
        (for data too large to copy, pass a ``tf.data.Dataset`` that reads it
        from files, as TensorFlow's multi-worker guide does).
        """
        with _distribute.scope_of(self):
            return self._fit(x, y, batch_size, epochs, **kwargs)

    def _fit(self, x, y, batch_size, epochs, **kwargs):
        strategy = _distribute.strategy_of(self)
        replicas = 1 if strategy is None else strategy.num_replicas_in_sync
        if x is None:
            raise ValueError("fit needs training data x")
        val = kwargs.get("validation_data")
        if isinstance(val, np.ndarray):  # Keras wants (x,) for x-only data
            kwargs["validation_data"] = (
                self._check_array(val, "validation_data", as_tensor=False),
            )
        if batch_size is None and not isinstance(x, tf.data.Dataset):
            batch_size = (
                DEFAULT_BATCH_SIZE_PROPOSAL
                if self.proposal is not None
                else DEFAULT_BATCH_SIZE_CHAINS
            )
        if isinstance(x, (np.ndarray, list, tf.Tensor)):
            x = self._check_array(x, "x", as_tensor=False)
            warning = inputs.scale_warning(x[:MAX_FIT_POINTS])
            if warning:
                warnings.warn(warning, UserWarning, stacklevel=3)
            split = kwargs.get("validation_split") or 0.0
            for mixture in self._unfitted_mixtures():  # not on the validation part
                mixture.fit(x[: int(len(x) * (1.0 - split))])
            size = batch_size
            chains = self.proposal is None and self.walkers is None
            if chains and min(size, len(x)) > self.buffer.capacity:
                raise ValueError(
                    f"batch_size {size} exceeds the replay buffer capacity "
                    f"{self.buffer.capacity}"
                )
            n = None if kwargs.get("validation_split") else len(x)  # last batch
            capacity = self.buffer.capacity if chains else None
            _distribute.check_batch_size(min(size, len(x)), capacity, replicas, n=n)
            x, y, batch_size = inputs.arrays_as_dataset(
                x, y, size, self.seed, self._train_counter, kwargs
            )
        elif isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            spec = spec[0] if isinstance(spec, tuple) else spec
            if tuple(spec.shape[1:]) != self.sample_shape:
                raise ValueError(
                    f"dataset elements have shape {tuple(spec.shape)}; expected "
                    f"(batch, {', '.join(map(str, self.sample_shape))})"
                )
            chains = self.proposal is None and self.walkers is None
            batch = spec.shape[0]
            if chains and batch is not None and batch > self.buffer.capacity:
                raise ValueError(
                    f"dataset batch size {spec.shape[0]} exceeds the replay buffer "
                    f"capacity {self.buffer.capacity}"
                )
            _distribute.check_batch_size(
                spec.shape[0], self.buffer.capacity if chains else None, replicas
            )
            unfitted = self._unfitted_mixtures()
            if unfitted:
                first = _first_samples(x, MAX_FIT_POINTS)
                for mixture in unfitted:
                    mixture.fit(first)
        elif self.proposal is not None and not self.proposal.is_fitted:
            raise ValueError(
                "the proposal is fitted to the training data on the first fit, "
                "which must then get arrays or a tf.data.Dataset (got "
                f"{type(x).__name__}): call model.proposal.fit(x_train) first"
            )
        if self.optimizer is not None and hasattr(self.optimizer, "build"):
            # create the slots now: a first trace that creates variables is traced
            # twice, and the optimizer step runs inside a tf.cond
            self.optimizer.build(self.trainable_variables)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(
            isinstance(cb, keras.callbacks.BackupAndRestore) for cb in callbacks
        ):
            # an interrupted fit with BackupAndRestore leaves Keras' training
            # state on the model; a later fit would resume from it, skipping epochs
            self._training_state = None
        checkpoints.check_backups(self, callbacks)
        if not any(getattr(cb, "handles_non_finite", False) for cb in callbacks):
            callbacks.append(_StopOnNonFinite())
        self.stop_reason = None
        self._averaging_on = self.averaging is not None and not getattr(
            self.optimizer, "use_ema", False
        )
        if self._averaging_on:
            self.averaging.swap_out()  # train on from the last iterate
        history = super().fit(
            x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, **kwargs
        )
        if self._averaging_on:
            self.averaging.swap_in()
            self._stale.assign(True)
        return history

    # --------------------------------------------------------- serialisation
    def save(self, filepath, *args, **kwargs):
        """``keras.Model.save`` to a ``.keras`` file, with the whole training state.

        Weights, optimizer, buffer, sampler and counters round-trip through
        ``tf.keras.models.load_model`` (no custom objects) or, checked,
        :func:`deel_ebm.export.load_model`. Keras' SavedModel directory cannot
        rebuild an EnergyModel: it is refused (serve with
        :func:`deel_ebm.export.export_saved_model`).
        """
        if not os.fspath(filepath).endswith(".keras"):
            raise ValueError(f"save an EnergyModel as a .keras file, not {filepath!r}")
        return super().save(filepath, *args, **kwargs)

    def get_config(self):
        return {
            "network": keras.utils.serialize_keras_object(self.network),
            # a learned k: its start (the weights restore its current value)
            "k_coef_lip": self._k_fixed,
            "learn_k": self.learn_k,
            "weight_average": self.weight_average,
            "k_max": self.k_max,
            "sampler": keras.utils.serialize_keras_object(self.sampler),
            "buffer": keras.utils.serialize_keras_object(self.buffer),
            "loss": keras.utils.serialize_keras_object(self.energy_loss),
            "input_shape": list(self.sample_shape),
            "seed": self.seed,
            "proposal": keras.utils.serialize_keras_object(self.proposal),
            "num_negatives": self.num_negatives,
            "walkers": keras.utils.serialize_keras_object(self.walkers),
            "base": keras.utils.serialize_keras_object(self.base),
            "base_starts": self.base_starts,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # models saved before proposals existed trained with chains
        config.setdefault("proposal", None)
        config.setdefault("weight_average", None)
        config.setdefault("walkers", None)
        config.setdefault("base", None)  # saved before sampling bases existed
        config.setdefault("base_starts", 0.0)  # saved before: chains from the buffer
        for key in (
            "network",
            "sampler",
            "buffer",
            "loss",
            "proposal",
            "walkers",
            "base",
        ):
            config[key] = keras.utils.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # already told when first built
            return cls(**config)


def _first_samples(dataset, n):
    """Up to ``n`` samples of a batched dataset (its inputs), as one array."""
    parts, count = [], 0
    for element in dataset:
        x = element[0] if isinstance(element, tuple) else element
        parts.append(np.asarray(x, np.float32))
        count += len(parts[-1])
        if count >= n:
            break
    if not parts:
        raise ValueError("the training dataset is empty")
    return np.concatenate(parts)[:n]


class _FunctionCache:
    """Compiled chains by (sampler, num_steps, trajectory), and the network's
    inference pass (``gemm_forward``); not tracked by Keras."""

    def __init__(self):
        self.functions = {}
        self.inference = None


class _StopOnNonFinite(keras.callbacks.Callback):
    """Stops ``fit`` at the first non-finite loss, saying what happened."""

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(loss):
            return
        message = (
            f"EnergyModel: non-finite loss at epoch {self._epoch + 1}, batch "
            f"{batch + 1}: energies or chain states reached NaN/Inf. Training "
            "stopped; the step was not applied, so weights, optimizer state and "
            "replay buffer are those of the last finite step. Try a smaller "
            "step_size or learning rate, or a larger l2_weight."
        )
        self.model.stop_reason = message
        self.model.stop_training = True
        warnings.warn(message, RuntimeWarning, stacklevel=2)
