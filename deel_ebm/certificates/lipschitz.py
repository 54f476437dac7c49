r"""Lipschitz bounds of networks: the premise of every certificate, checked.

:func:`lipschitz_upper_bound` (layer-wise, on the weights used at inference) and
:func:`empirical_lipschitz_lower_bound` (gradients and difference quotients)
bracket the Lipschitz constant of an energy :math:`E = k f`. Norms are Euclidean
over all non-batch axes. Nothing here needs the EnergyModel: pass its network and
``k_coef_lip``. Per-layer rules live in a table (``_SIMPLE``) and
:data:`~deel_ebm.nets.LIPSCHITZ_NEUTRAL_LAYERS`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np

# importing deel_ebm (the package) has already set the Keras-2 environment
from deel.lip import layers as dl

from deel_ebm._backend import keras, tf
from deel_ebm._checks import check_positive
from deel_ebm.nets import LIPSCHITZ_NEUTRAL_LAYERS

__all__ = [
    "spectral_norm",
    "conv_operator_norm",
    "layer_lipschitz_bounds",
    "lipschitz_upper_bound",
    "empirical_lipschitz_lower_bound",
]

DEFAULT_TOL = 1e-4
DEFAULT_MAX_ITER = 2000
DEFAULT_ASCENT_STEPS = 20
DEFAULT_ASCENT_STEP_SIZE = 0.05
DEFAULT_NUM_PAIRS = 2000
#: Matrices whose smaller side is at most this get an exact SVD, not power iteration.
DENSE_SVD_MAX_DIM = 2048
#: Global Lipschitz constants (max |derivative|, rounded up) of Keras activations.
ACTIVATION_LIPSCHITZ = {
    **dict.fromkeys(
        "linear relu relu6 tanh softplus softsign softmax elu".split(), 1.0
    ),
    "sigmoid": 0.25,
    "hard_sigmoid": 0.2,
    "swish": 1.09984,  # sigma(x) + x sigma(x)(1 - sigma(x)), max 1.099839 at 2.3994
    "silu": 1.09984,
    "gelu": 1.12900,  # Phi(x) + x phi(x), max 1.128904 at sqrt(2); tanh form 1.128993
    "mish": 1.08850,  # max 1.088498
    "selu": 1.75810,  # scale * alpha = 1.0507 * 1.6733
}


def _power_iteration(apply, shape, tol, max_iter, seed, dtype=tf.float64) -> float:
    """Largest singular value of the linear map ``apply``, times ``1 + tol``.

    Power iteration on A^T A, the transpose from autodiff: grad_v 0.5 ||A v||^2 =
    A^T A v. The estimate ||A v|| (v unit) rises monotonically to sigma_max with
    geometric increments of ratio q; the run stops when the extrapolated remaining
    rise, increment * q / (1 - q) with q the largest of the last three increment
    ratios, has been below tol / 4 * estimate three iterations in a row, so the
    returned estimate * (1 + tol) covers it with a factor 4 to spare. A run that
    does not converge within max_iter warns.
    """
    rng = np.random.default_rng(seed)
    v = tf.constant(rng.standard_normal(shape), dtype=dtype)

    @tf.function
    def step(v):
        v = v / tf.norm(v)
        with tf.GradientTape() as tape:
            tape.watch(v)
            out = apply(v)
            half_sq = 0.5 * tf.reduce_sum(tf.square(out))
        return tape.gradient(half_sq, v), tf.sqrt(2.0 * half_sq)

    sigma, increments, converged = 0.0, [], 0
    for _ in range(max(int(max_iter), 4)):
        v, new_sigma = step(v)
        increment = max(float(new_sigma) - sigma, 0.0)
        sigma = float(new_sigma)
        if sigma == 0.0:
            return 0.0
        increments.append(increment)
        if len(increments) < 5:
            continue
        # the largest of the last three increment ratios (the early phase and
        # float rounding make single ratios noisy); an increment of exactly 0 with
        # nonzero predecessors is rounding, not convergence, so it does not stop
        last = increments[-4:]
        if min(last[:-1]) == 0.0:
            ratio = 1.0 if max(last) > 0.0 else 0.0
        else:
            ratio = max(b / a for a, b in zip(last[:-1], last[1:]))
        remaining = (
            max(last[-1], last[-2]) * ratio / (1.0 - ratio) if ratio < 1 else math.inf
        )
        converged = converged + 1 if remaining <= 0.25 * tol * sigma else 0
        if converged >= 3:  # the rule must hold three times in a row
            return sigma * (1.0 + tol)
    warnings.warn(
        f"power iteration did not converge in {max_iter} steps (estimate {sigma:.6g}, "
        f"last increment {increment:.3g}): the bound may be too low; raise max_iter "
        "or use certified=True",
        RuntimeWarning,
        stacklevel=3,
    )
    return sigma * (1.0 + tol)


def spectral_norm(
    matrix, tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER, seed: int = 0
) -> float:
    r"""Largest singular value of a matrix, from above.

    Exact (LAPACK SVD in float64) when the smaller side is at most
    :data:`DENSE_SVD_MAX_DIM`; otherwise power iteration (see
    :func:`lipschitz_upper_bound`), returned times :math:`1 + \mathrm{tol}`.

    Args:
        matrix: array ``(m, n)``.
        tol: relative tolerance of the power iteration (> 0).
        max_iter: maximum number of power iterations.
        seed: seed of the random start vector.

    Returns:
        :math:`\sigma_{max}`, a float.

    Raises:
        ValueError: for a matrix that is not 2-D or a non-positive ``tol``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {matrix.shape}")
    tol = check_positive("tol", tol)
    if min(matrix.shape) <= DENSE_SVD_MAX_DIM:
        return float(np.linalg.norm(matrix, 2))
    operator = tf.constant(matrix)
    return _power_iteration(
        lambda v: tf.matmul(v, operator), (1, matrix.shape[0]), tol, max_iter, seed
    )


def _pair(value, name: str) -> tuple[int, int]:
    if np.ndim(value) > 1 or np.size(value) not in (1, 2):
        raise ValueError(f"{name} must be a positive int or pair, got {value!r}")
    pair = tuple(np.broadcast_to(np.asarray(value), (2,)).tolist())
    if any(int(p) != p or p < 1 for p in pair):
        raise ValueError(f"{name} must be a positive int or pair, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_operator_norm(
    kernel,
    input_shape,
    strides=1,
    padding: str = "same",
    dilation_rate=1,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    certified: bool = False,
) -> float:
    r"""Operator norm (L2 to L2) of a 2-D convolution at an input shape, from above.

    The map :math:`x \mapsto K * x` (``tf.nn.conv2d``, channels last, zero padding)
    can have a norm up to :math:`\sqrt{k_h k_w}` times that of the reshaped
    :math:`(k_h k_w c_{in}) \times c_{out}` kernel matrix, so the operator is used:

    - ``certified=False``: power iteration on :math:`A^\top A` at ``input_shape``
      (transpose by autodiff, float64), see :func:`lipschitz_upper_bound`;
    - ``certified=True``: the strided, zero-padded convolution is a sub-sampled
      restriction of the circular one on an :math:`(h + k_h - 1) \times (w + k_w -
      1)` torus, so its norm is at most :math:`\max_\omega \sigma_{max}(\hat
      K(\omega))` over that torus' DFT frequencies (Sedghi et al., ICLR 2019), by
      exact SVDs. A proof, looser on small images (it ignores the zero border).

    Args:
        kernel: array ``(k_h, k_w, c_in, c_out)``.
        input_shape: ``(h, w, c_in)``, a leading batch entry is dropped.
        strides, dilation_rate: int or pair.
        padding: ``"same"`` or ``"valid"``.
        tol, max_iter, seed: power-iteration settings.
        certified: return the circular (FFT) bound.

    Returns:
        The bound, a float.

    Raises:
        ValueError: for inconsistent shapes or an unknown padding.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    shape = tuple(input_shape)[-3:]
    if kernel.ndim != 4 or len(shape) != 3 or shape[2] != kernel.shape[2]:
        raise ValueError(
            f"kernel shape {kernel.shape} and input shape {tuple(input_shape)} do not "
            "describe a (k_h, k_w, c_in, c_out) conv on (h, w, c_in) inputs"
        )
    if any(s is None for s in shape):
        raise ValueError(f"input shape {tuple(input_shape)} must be fully known")
    if str(padding).lower() not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    strides, dilation = _pair(strides, "strides"), _pair(dilation_rate, "dilation_rate")
    tol = check_positive("tol", tol)
    if certified:
        k_h, k_w = (dilation[i] * (kernel.shape[i] - 1) + 1 for i in range(2))
        dilated = np.zeros((k_h, k_w) + kernel.shape[2:])
        dilated[:: dilation[0], :: dilation[1]] = kernel
        size = (shape[0] + k_h - 1, shape[1] + k_w - 1)
        symbol = np.fft.fft2(dilated, s=size, axes=(0, 1)).reshape(
            -1, *kernel.shape[2:]
        )
        return float(np.linalg.svd(symbol, compute_uv=False)[:, 0].max())
    operator = tf.constant(kernel)

    def apply(v):
        return tf.nn.conv2d(
            v, operator, strides, str(padding).upper(), dilations=dilation
        )

    return _power_iteration(apply, (1,) + shape, tol, max_iter, seed)


def _activation_bound(activation, layer) -> float:
    name = getattr(activation, "__name__", str(activation))
    if activation is not None and name not in ACTIVATION_LIPSCHITZ:
        raise ValueError(
            f"unknown Lipschitz constant for activation {name!r} of layer "
            f"{layer.name!r}; known: {sorted(ACTIVATION_LIPSCHITZ)}"
        )
    return 1.0 if activation is None else ACTIVATION_LIPSCHITZ[name]


def _hwc(layer, shape) -> tuple:
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return (shape[-2], shape[-1], shape[-3])
    return tuple(shape[-3:])


_L = keras.layers
#: isometries, permutations, identities at inference, reflections: constant 1
_UNIT_LAYERS = LIPSCHITZ_NEUTRAL_LAYERS
_K_LAYERS = (dl.GroupSort, dl.MaxMin, dl.ScaledGlobalL2NormPooling2D)  # k_coef_lip
_LINEAR_POOLS = (dl.ScaledAveragePooling2D, dl.ScaledGlobalAveragePooling2D)
_LINEAR_POOLS += (_L.AveragePooling2D, _L.GlobalAveragePooling2D)
_SIMPLE = {  # exact class -> bound
    _L.Activation: lambda layer: _activation_bound(layer.activation, layer),
    _L.ReLU: lambda layer: _relu_bound(layer),
    _L.LeakyReLU: lambda layer: max(1.0, abs(float(layer.alpha))),
    _L.ELU: lambda layer: max(1.0, abs(float(layer.alpha))),
    _L.PReLU: lambda layer: max(1.0, float(np.abs(layer.alpha.numpy()).max())),
    _L.Rescaling: lambda layer: float(np.abs(np.asarray(layer.scale)).max()),
    _L.BatchNormalization: lambda layer: float(  # gamma (x - mu) / sqrt(var + eps)
        np.abs(1.0 if layer.gamma is None else layer.gamma.numpy()).max()
        / np.sqrt(layer.moving_variance.numpy() + layer.epsilon).min()
    ),
}


def _relu_bound(layer) -> float:
    if float(layer.threshold) != 0.0:  # the output jumps at a nonzero threshold
        raise ValueError(
            f"layer {layer.name!r} (ReLU with threshold {float(layer.threshold)}) is "
            "discontinuous: no Lipschitz constant"
        )
    return max(1.0, abs(float(layer.negative_slope)))


def _layer_bound(layer, shape, tol, max_iter, seed, certified) -> float:
    """Lipschitz constant of one layer at inference, for inputs of shape ``shape``."""
    kind = type(layer)
    if isinstance(layer, keras.Model):
        return math.prod(
            b for _, b in _bounds(layer, shape, tol, max_iter, seed, certified)
        )
    if kind in _UNIT_LAYERS:
        return 1.0
    if kind in _SIMPLE:
        return _SIMPLE[kind](layer)
    if isinstance(layer, _K_LAYERS):
        return abs(float(layer.k_coef_lip))
    lip_dense = isinstance(layer, (dl.SpectralDense, dl.FrobeniusDense))
    lip_conv = isinstance(layer, (dl.SpectralConv2D, dl.FrobeniusConv2D))
    if lip_dense or lip_conv or kind in (_L.Dense, _L.Conv2D):
        kernel = (layer.wbar if lip_dense or lip_conv else layer.kernel).numpy()
        if lip_dense or kind is _L.Dense:
            norm = spectral_norm(kernel, tol, max_iter, seed)
        else:
            args = (layer.strides, layer.padding, layer.dilation_rate)
            norm = conv_operator_norm(
                kernel, _hwc(layer, shape), *args, tol, max_iter, seed, certified
            )
        return norm * _activation_bound(layer.activation, layer)
    if isinstance(layer, dl.ScaledL2NormPooling2D) or kind is _L.MaxPooling2D:
        ones = tf.ones((1,) + _hwc(layer, shape)[:2] + (1,))
        with tf.GradientTape() as tape:  # windows: valid sizes and overlaps
            tape.watch(ones)
            window = tf.ones(tuple(layer.pool_size) + (1, 1))
            counts = tf.nn.conv2d(ones, window, layer.strides, layer.padding.upper())
        overlap = float(tf.reduce_max(tape.gradient(counts, ones)))
        if kind is _L.MaxPooling2D:  # max over a window <= its L2 norm
            return math.sqrt(overlap)
        # sqrt(p * mean of squares) = sqrt(p / count) * L2 norm of the window
        scale = math.sqrt(np.prod(layer.pool_size) / float(tf.reduce_min(counts)))
        return abs(float(layer.k_coef_lip)) * scale * math.sqrt(overlap)
    if isinstance(layer, _LINEAR_POOLS[:2]) or kind in _LINEAR_POOLS[2:]:
        shape = (1,) + tuple(shape[1:])
        return _power_iteration(layer, shape, tol, max_iter, seed, tf.float32)
    raise ValueError(
        f"unknown Lipschitz constant for layer {layer.name!r} ({kind.__name__}); "
        "supported: deel-lip constrained layers, activations and poolings, Keras "
        "Dense, Conv2D, poolings, activations, BatchNormalization, Rescaling, "
        "Dropout-like and reshaping layers"
    )


def _chain(network) -> list:
    """The layers of a network as a chain, or ValueError if it is not one."""
    if isinstance(network, keras.Sequential):
        return list(network.layers)
    if not getattr(network, "_is_graph_network", False):
        raise ValueError(
            f"network {network.name!r} is a subclassed model: only Sequential and "
            "functional models can be walked layer by layer"
        )
    if len(network.inputs) != 1 or len(network.outputs) != 1:
        raise ValueError(f"network {network.name!r} must have one input and one output")
    chain = list(network.layers)
    for previous, layer in zip(chain, chain[1:]):
        nodes = layer.inbound_nodes
        parents = nodes[0].inbound_layers if len(nodes) == 1 else None
        if parents is not previous:
            raise ValueError(
                f"layer {layer.name!r} of network {network.name!r} does not take the "
                f"single output of {previous.name!r}: branching, shared or "
                "multi-input layers are not supported (the product of per-branch "
                "bounds would need the graph structure)"
            )
    return chain


def _bounds(network, shape, tol, max_iter, seed, certified) -> list[tuple[str, float]]:
    bounds = []
    for index, layer in enumerate(_chain(network)):
        bound = _layer_bound(layer, shape, tol, max_iter, seed + index, certified)
        bounds.append((layer.name, float(bound)))
        if not isinstance(layer, keras.layers.InputLayer):
            shape = tuple(tf.TensorShape(layer.compute_output_shape(shape)).as_list())
    return bounds


def layer_lipschitz_bounds(
    network,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    certified: bool = False,
    input_shape=None,
    seed: int = 0,
) -> list[tuple[str, float]]:
    """Per-layer Lipschitz constants at inference, in layer order.

    Same arguments and per-layer rules as :func:`lipschitz_upper_bound`, whose value
    is the product of these.

    Returns:
        A list of ``(layer name, bound)`` pairs.
    """
    if not isinstance(network, keras.Model):
        raise TypeError(f"network must be a keras.Model, got {type(network).__name__}")
    check_positive("tol", tol)
    if input_shape is None:
        try:
            input_shape = network.input_shape
        except AttributeError as err:
            raise ValueError(
                f"network {network.name!r} has no known input shape: build it (give "
                "it an Input or call it once) or pass input_shape"
            ) from err
    if isinstance(input_shape, list):
        raise ValueError(f"network must have a single input, got {input_shape}")
    return _bounds(network, tuple(input_shape), tol, max_iter, seed, certified)


def lipschitz_upper_bound(
    network,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    certified: bool = False,
    input_shape=None,
    seed: int = 0,
) -> float:
    r"""Upper bound on the Lipschitz constant of ``network`` run with training=False.

    :math:`\mathrm{Lip}(f_L \circ \dots \circ f_1) \le \prod_l \mathrm{Lip}(f_l)`,
    per layer on the weights used at inference:

    - ``SpectralDense``/``FrobeniusDense``: :math:`\sigma_{max}` of the cached
      ``wbar``; Keras ``Dense``: of ``kernel`` (:func:`spectral_norm`).
      ``SpectralConv2D``/``FrobeniusConv2D`` (``wbar``, which already includes the
      padding factor ``_get_coef()``) and ``Conv2D`` (``kernel``): operator norm of
      the convolution at the layer's input shape, strides and padding
      (:func:`conv_operator_norm`). Times the activation's constant.
    - ``GroupSort``/``GroupSort2``/``FullSort``/``MaxMin``,
      ``ScaledGlobalL2NormPooling2D``: ``k_coef_lip``. ``Householder``, ``Flatten``,
      ``Reshape``, ``Permute``, invertible down/up-sampling, inference identities
      (``Dropout``, ``GaussianNoise`` ...), ``Softmax``, global max pooling: 1.
    - ``ScaledL2NormPooling2D``: :math:`k\sqrt{p / c_{min}}\sqrt{o_{max}}` (pool size
      :math:`p`, fewest non-padded inputs of a window :math:`c_{min}`, most windows
      sharing an input :math:`o_{max}`; 1 for non-overlapping "valid" pooling);
      ``MaxPooling2D``: :math:`\sqrt{o_{max}}`; average poolings: operator norm.
    - :data:`ACTIVATION_LIPSCHITZ` (1 for ReLU and tanh, 1.09984 for swish ...);
      ``LeakyReLU``/``ELU``/``PReLU``: :math:`\max(1, |\alpha|)`;
      ``BatchNormalization``: :math:`\max|\gamma| / \min\sqrt{var + \epsilon}`.

    Honesty: exact SVDs and ``certified=True`` are bounds up to float64 rounding.
    Power iteration (convolutions and average poolings by default, matrices beyond
    :data:`DENSE_SVD_MAX_DIM`) approaches :math:`\sigma_{max}` from below with
    geometric increments of ratio :math:`q`; it stops when the extrapolated rest
    :math:`\Delta q / (1 - q)` is below :math:`\mathrm{tol}/2` relatively, and
    reports :math:`\hat\sigma (1 + \mathrm{tol})`: a bound for a converged run, not
    a proof (a run hitting ``max_iter`` warns). ``wbar`` is read as is: refresh it
    with one ``training=True`` call first. The bound is on :math:`f`; the energy
    :math:`E = k f` has ``k_coef_lip`` times it.

    Args:
        network: a built ``keras.Sequential`` or functional model whose layers form a
            chain (nested chain models are walked). Branches (residual ``Add``,
            ``Concatenate``) and shared layers raise.
        tol: relative tolerance and inflation of power iterations (> 0).
        max_iter: maximum number of power iterations per layer.
        certified: proof-grade circular bound for convolutions.
        input_shape: input shape with batch entry, e.g. ``(None, 8, 8, 1)``; defaults
            to ``network.input_shape`` (needed for fully convolutional networks).
        seed: seed of the power-iteration start vectors.

    Returns:
        The bound, a float.

    Raises:
        TypeError: if ``network`` is not a ``keras.Model``.
        ValueError: for an unbuilt, subclassed or branching network, or a layer whose
            Lipschitz constant is unknown (named in the message).

    Example:
        >>> from deel.lip.layers import GroupSort2, SpectralDense
        >>> net = keras.Sequential(
        ...     [keras.Input((2,)), SpectralDense(16), GroupSort2(), SpectralDense(1)])
        >>> _ = net(tf.zeros((1, 2)), training=True)  # refresh wbar
        >>> lipschitz_upper_bound(net) <= 1.0 + 1e-3
        True
    """
    bounds = layer_lipschitz_bounds(
        network, tol, max_iter, certified, input_shape, seed
    )
    return float(math.prod(b for _, b in bounds))


def _per_sample_norm(x):
    return tf.sqrt(tf.reduce_sum(tf.reshape(tf.square(x), (tf.shape(x)[0], -1)), -1))


def empirical_lipschitz_lower_bound(
    energy_or_network: Callable,
    points,
    k_coef_lip: float = 1.0,
    ascent_steps: int = DEFAULT_ASCENT_STEPS,
    step_size: float = DEFAULT_ASCENT_STEP_SIZE,
    num_pairs: int = DEFAULT_NUM_PAIRS,
    seed: int = 0,
) -> float:
    r"""Lower bound on the Lipschitz constant of :math:`E = k\,g` from samples.

    The largest of :math:`\|\nabla_x E(x)\|` (a lower bound wherever :math:`E` is
    differentiable: almost everywhere) at ``points`` and along ``ascent_steps`` steps
    of projected normalised ascent on :math:`\|\nabla_x E\|^2`,
    :math:`x \leftarrow \Pi(x + \eta\, d / \|d\|)` with :math:`\Pi` the clip to the
    bounding box of ``points`` (piecewise-linear networks have :math:`d = 0` and stay
    put), and of :math:`|E(x) - E(y)| / \|x - y\|` on ``num_pairs`` random pairs of
    the points visited (a lower bound anywhere). Float32 evaluation can exceed the
    exact constant by a relative ~1e-6.

    Args:
        energy_or_network: a Keras layer/model :math:`g` (called with
            ``training=False``) or a TensorFlow-differentiable callable, mapping a
            batch ``(n, ...)`` to ``(n,)`` or ``(n, 1)``.
        points: array ``(n, ...)``, ``n >= 2``.
        k_coef_lip: factor :math:`k` on the output (1 if the callable includes it).
        ascent_steps: number of ascent steps (>= 0).
        step_size: ascent step length :math:`\eta` in input units (> 0).
        num_pairs: number of random pairs (>= 0).
        seed: seed of the pairs.

    Returns:
        The lower bound, a float.

    Raises:
        TypeError: for a callable that is not one or is not differentiable.
        ValueError: for fewer than 2 points, not one output per point, bad settings.
    """
    if not callable(energy_or_network):
        raise TypeError(
            "energy_or_network must be callable, got "
            f"{type(energy_or_network).__name__}"
        )
    points = np.asarray(points, dtype=np.float32)
    if points.ndim < 2 or points.shape[0] < 2:
        raise ValueError(f"points must have shape (n >= 2, ...), got {points.shape}")
    k = check_positive("k_coef_lip", k_coef_lip)
    step_size = check_positive("step_size", step_size)
    if int(ascent_steps) != ascent_steps or ascent_steps < 0:
        raise ValueError(f"ascent_steps must be an int >= 0, got {ascent_steps!r}")
    if int(num_pairs) != num_pairs or num_pairs < 0:
        raise ValueError(f"num_pairs must be an int >= 0, got {num_pairs!r}")
    is_keras = isinstance(energy_or_network, keras.layers.Layer)

    def energy(x):
        out = energy_or_network(x, training=False) if is_keras else energy_or_network(x)
        out = tf.convert_to_tensor(out)
        if out.shape.rank is None or out.shape.num_elements() != x.shape[0]:
            raise ValueError(
                f"the energy must give one value per point, got {out.shape}"
            )
        return k * tf.reshape(tf.cast(out, tf.float32), (-1,))

    def grad_norm(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            values = energy(x)
        grad = tape.gradient(values, x)
        if grad is None:
            raise TypeError("the energy is not differentiable with TensorFlow")
        return _per_sample_norm(grad), values

    low, high = points.min(axis=0), points.max(axis=0)

    @tf.function
    def ascent_step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            sq = tf.reduce_sum(tf.square(grad_norm(x)[0]))
        direction = tape.gradient(sq, x)
        if direction is None:  # no second-order path: nothing to climb
            direction = tf.zeros_like(x)
        scale = tf.reshape(_per_sample_norm(direction), (-1,) + (1,) * (x.ndim - 1))
        x = x + step_size * direction / tf.maximum(scale, 1e-12)
        x = tf.clip_by_value(x, low, high)
        return (x,) + grad_norm(x)

    x = tf.constant(points)
    norms, values = tf.function(grad_norm)(x)
    best = float(tf.reduce_max(norms))
    visited, energies = [points], [values.numpy()]
    for _ in range(int(ascent_steps)):
        x, norms, values = ascent_step(x)
        best = max(best, float(tf.reduce_max(norms)))
        visited.append(x.numpy())
        energies.append(values.numpy())
    if num_pairs:
        xs = np.concatenate(visited).reshape(-1, int(np.prod(points.shape[1:])))
        es = np.concatenate(energies).astype(np.float64)
        rng = np.random.default_rng(seed)
        i, j = rng.integers(0, len(xs), (2, int(num_pairs)))
        dist = np.linalg.norm(xs[i].astype(np.float64) - xs[j], axis=1)
        keep = dist > 0
        if keep.any():
            best = max(best, float((np.abs(es[i] - es[j])[keep] / dist[keep]).max()))
    return best
