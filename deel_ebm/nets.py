"""Ready energy networks: deel-lip 1-Lipschitz nets and unconstrained twins.

Every builder returns a ``keras.Sequential`` mapping a batch ``(n, *input_shape)``
to one scalar per sample ``(n, 1)``. The Lipschitz builders use only deel-lip
layers (``SpectralDense``, ``SpectralConv2D``, ``FrobeniusDense``, ``GroupSort2``,
``ScaledL2NormPooling2D``), so the network is 1-Lipschitz in the L2 norm and the
energy ``k · f`` is k-Lipschitz. Each ``unconstrained_*`` twin has the same
shapes and activation with plain Keras layers: the ablation that shows what the
constraint changes.

Under XLA, the ``FullSort`` and ``GroupSort(n)`` layers sort by a sorting network
(:func:`bitonic_sort`, exactly ``tf.sort``'s values) rather than ``tf.sort``,
whose XLA CPU kernel is slow; :func:`sorting_network` switches it off in a block.
"""

from __future__ import annotations

import numpy as np
from deel.lip import layers as dl
from deel.lip.activations import FullSort, GroupSort, GroupSort2
from deel.lip.initializers import SpectralInitializer
from deel.lip.layers import (
    FrobeniusDense,
    LipschitzLayer,
    ScaledL2NormPooling2D,
    SpectralConv2D,
    SpectralDense,
)
from deel.lip.normalizers import reshaped_kernel_orthogonalization

from deel_ebm._backend import keras, tf
from deel_ebm._sorting import bitonic_sort, sort_last_axis, sorting_network

__all__ = [
    "lipschitz_mlp",
    "unconstrained_mlp",
    "lipschitz_convnet",
    "unconstrained_convnet",
    "NETWORKS",
    "LIPSCHITZ_NEUTRAL_LAYERS",
    "flat_layers",
    "unconstrained_layers",
    "refresh_constrained_kernels",
    "seed_power_iterations",
    "DEFAULT_UNITS",
    "DEFAULT_ACTIVATION",
    "LOW_DIM_UNITS",
    "LOW_DIM_ACTIVATION",
    "default_mlp_shape",
    "default_activation",
    "is_low_dimensional",
    "LOW_DIM",
    "LIPSCHITZ_ACTIVATIONS",
    "layer_activations",
    "group_size",
    "DEFAULT_FILTERS",
    "lipschitz_classifier",
    "unconstrained_classifier",
    "CLASSIFIERS",
    "logit_margin_factor",
    "bitonic_sort",
    "sort_last_axis",
    "sorting_network",
]

DEFAULT_UNITS = (256, 256, 256)
DEFAULT_ACTIVATION = "groupsort2"
#: "low dimension": up to this many input dimensions (flattened) the defaults
#: are lipschitz_mlp's small hybrid net below and the EnergyModel's proposal
#: negatives (their importance weights degenerate above: docs/guide.md). The net
#: sorts its first layer whole (FullSort: the largest of 64 projections is a
#: polygonal norm, which fits rings) and its next two in groups of 8 (many
#: independent folds, which fit checkerboards and spirals); measured against
#: FullSort 3 x 64, GroupSort8 3 x 128 and GroupSort2 3 x 256 in docs/guide.md
LOW_DIM = 8
LOW_DIM_UNITS = (64, 128, 128)
LOW_DIM_ACTIVATION = ("fullsort", "groupsort8", "groupsort8")
DEFAULT_FILTERS = (32, 64)
_ACTIVATIONS = ("groupsort2", "relu", "swish", "elu", "tanh")

_L = keras.layers
#: Weight-free layers that are 1-Lipschitz at inference (isometries, reshapes,
#: permutations, identities at inference, norm-preserving maps). A network made of
#: these and deel-lip Lipschitz layers is certified; the certificates give them
#: the constant 1.
LIPSCHITZ_NEUTRAL_LAYERS = (
    _L.InputLayer,
    _L.Flatten,
    _L.Reshape,
    _L.Permute,
    _L.Dropout,
    _L.SpatialDropout1D,
    _L.SpatialDropout2D,
    _L.GaussianNoise,
    _L.GaussianDropout,
    _L.AlphaDropout,
    _L.GlobalMaxPooling2D,
    _L.Softmax,
    dl.InvertibleDownSampling,
    dl.InvertibleUpSampling,
    dl.Householder,
)


def flat_layers(network) -> list:
    """All leaf layers of a (possibly nested) Keras network, in order."""
    if not isinstance(network, keras.Model):
        return [network]
    return [leaf for layer in network.layers for leaf in flat_layers(layer)]


def unconstrained_layers(network) -> list[str]:
    """Names of the layers that are neither deel-lip Lipschitz layers nor neutral."""
    return [
        layer.name
        for layer in flat_layers(network)
        if not isinstance(layer, (LipschitzLayer, *LIPSCHITZ_NEUTRAL_LAYERS))
    ]


def refresh_constrained_kernels(network) -> int:
    """Recompute the cached constrained kernel (``wbar``) of every deel-lip layer.

    Each deel-lip layer with a cached kernel is called alone, with
    ``training=True``, on a zero input of its own input shape: power iteration and
    Björck run and write ``wbar``, and no other layer runs in training mode (no
    Dropout draw, no BatchNormalization statistics update).

    Returns:
        The number of layers refreshed.
    """
    count = 0
    for layer in flat_layers(network):
        if isinstance(layer, LipschitzLayer) and hasattr(layer, "wbar"):
            shape = tf.TensorShape(layer.input_shape).as_list()
            layer(tf.zeros([1, *shape[1:]]), training=True)
            count += 1
    return count


def _check_sizes(name, sizes):
    sizes = tuple(sizes)
    if not sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints")
    if any(s % 2 for s in sizes):
        raise ValueError(f"{name} must be even (GroupSort2 pairs units), got {sizes}")
    return sizes


def _check_shape(input_shape, rank):
    shape = tuple(input_shape)
    if len(shape) != rank or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(
            f"input_shape must be {rank} positive ints, got {input_shape!r}"
        )
    return shape


def _spectral_init(seed):
    return SpectralInitializer(
        base_initializer=keras.initializers.Orthogonal(seed=seed)
    )


_POWER_SEED = 0x5EED  # second word of the stateless seeds of power-iteration vectors
#: a fresh kernel and its seeded recomputation differ within Björck's stopping
#: tolerance (at most 6.4e-4 over 20 seeds of Glorot, normal and orthogonal
#: bases; last bits over an orthogonal one); an Adam step at lr 1e-3 moves each
#: entry by about 1e-3, so a kernel trained a few steps is refused
_FRESH_ATOL = 2e-3


def _seeded_spectral_kernel(init, shape, dtype):
    """What ``init`` (a deel-lip ``SpectralInitializer``) gives for ``shape``,
    its power iteration started from a vector drawn from its base
    initializer's seed (same law as deel-lip's unseeded draw, ``U[0, 1)``)."""
    w = init.base_initializer(shape=shape, dtype=dtype)
    u = tf.random.stateless_uniform(
        (1, shape[-1]), seed=[init.base_initializer.seed, _POWER_SEED], dtype=dtype
    )
    wbar, _, _ = reshaped_kernel_orthogonalization(
        w, u, init.k_coef_lip, init.eps_spectral, init.eps_bjorck, init.beta_bjorck
    )
    return wbar


def seed_power_iterations(network, seed=0):
    """Make a freshly built deel-lip network a function of its seeds only.

    deel-lip draws two things without a seed: each ``SpectralDense`` /
    ``SpectralConv2D`` layer's power-iteration vector ``u``
    (``RandomNormal(0, 1)``), and, in ``SpectralInitializer``, the vector its
    power iteration starts from, so the orthonormalised kernel differs in its
    last bits from one process to the next. This assigns every ``u`` a
    standard normal drawn from ``seed`` and the layer's position, and
    recomputes every kernel whose initializer is a ``SpectralInitializer`` over
    a seeded base (``Orthogonal(seed=...)``) with its power iteration started
    from a vector drawn from that seed (its cached ``wbar`` too). The layers'
    configs are unchanged: the network saves and loads with deel-lip alone.
    The builders of this module call it; for a network of your own, call it
    right after building (kernels over unseeded initializers keep their
    values: seed those with ``tf.keras.utils.set_random_seed`` before building).

    Returns:
        ``network``.

    Raises:
        ValueError: when ``network`` is not built, or when a kernel over a
            seeded ``SpectralInitializer`` is no longer its initial value
            (more than 2e-3 away in an entry: trained or loaded); nothing is
            assigned then.
    """
    if not network.built:
        raise ValueError("seed_power_iterations needs a built network")
    vectors, kernels = [], []
    for i, layer in enumerate(flat_layers(network)):
        if not isinstance(layer, LipschitzLayer):
            continue
        u = getattr(layer, "u", None)
        if isinstance(u, tf.Variable):
            draw = tf.random.stateless_normal(
                u.shape, seed=[int(seed), _POWER_SEED + 1 + i], dtype=u.dtype
            )
            vectors.append((u, draw))
        init = getattr(layer, "kernel_initializer", None)
        kernel = getattr(layer, "kernel", None)
        if (
            isinstance(init, SpectralInitializer)
            and getattr(init.base_initializer, "seed", None) is not None
            and isinstance(kernel, tf.Variable)
        ):
            value = _seeded_spectral_kernel(init, kernel.shape, kernel.dtype)
            # fresh: the kernel is its initializer's but for the last bits
            if float(tf.reduce_max(tf.abs(kernel - value))) > _FRESH_ATOL:
                raise ValueError(
                    f"seed_power_iterations: layer {layer.name!r} no longer holds "
                    "its initial kernel (trained or loaded?); it seeds freshly "
                    "built networks only"
                )
            kernels.append((layer, kernel, value))
    for u, draw in vectors:  # nothing assigned before every layer is checked
        u.assign(draw)
    for layer, kernel, value in kernels:
        kernel.assign(value)
        if isinstance(getattr(layer, "wbar", None), tf.Variable):
            layer.wbar.assign(value)
    return network


def _activation(name):
    if name == "groupsort2":
        return GroupSort2()
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {name!r}")
    return keras.layers.Activation(name)


#: the sorting activations of :func:`lipschitz_mlp` (1-Lipschitz and
#: gradient-norm preserving: GroupSort of pairs, of fours, or of the whole layer)
#: The sorting activations by name; any ``"groupsort<n>"`` (n ≥ 2, sorting
#: groups of n units) is accepted too.
LIPSCHITZ_ACTIVATIONS = ("groupsort2", "groupsort4", "groupsort8", "fullsort")


def group_size(name) -> int | None:
    """Units per sorted group of activation ``name`` (None: FullSort, the whole
    layer); a one-line ValueError for an unknown name."""
    if name == "fullsort":
        return None
    if isinstance(name, str) and name.startswith("groupsort"):
        digits = name[len("groupsort") :]
        if digits.isdigit() and int(digits) >= 2:
            return int(digits)
    raise ValueError(
        f"activation must be one of {list(LIPSCHITZ_ACTIVATIONS)} (or groupsort<n>, "
        f"n >= 2), got {name!r}"
    )


def _sorting_activation(name):
    n = group_size(name)
    if n is None:
        return FullSort()
    return GroupSort2() if n == 2 else GroupSort(n=n)


def layer_activations(activation, num_layers) -> tuple:
    """One activation name per hidden layer: ``activation`` is a name of
    :data:`LIPSCHITZ_ACTIVATIONS` or ``"groupsort<n>"`` (every layer), a
    comma-separated string of names or a sequence of names (one per layer)."""
    if isinstance(activation, str):
        activation = activation.split(",") if "," in activation else [activation]
        if len(activation) == 1:
            activation = activation * num_layers
    names = tuple(str(a).strip() for a in activation)
    if len(names) != num_layers:
        raise ValueError(
            f"activation names one activation per hidden layer: got {len(names)} "
            f"for {num_layers} layers ({','.join(names)})"
        )
    for name in names:
        group_size(name)  # checks the name
    return names


def is_low_dimensional(sample_shape) -> bool:
    """True when a sample of ``sample_shape`` has at most :data:`LOW_DIM` values."""
    return int(np.prod(tuple(sample_shape))) <= LOW_DIM


def default_mlp_shape(input_shape):
    """``(units, activation)`` of :func:`lipschitz_mlp` by default: up to
    :data:`LOW_DIM` input dimensions 64 FullSort units then 2 × 128 GroupSort8
    (:data:`LOW_DIM_UNITS`, :data:`LOW_DIM_ACTIVATION`), else 3 × 256 GroupSort2."""
    if is_low_dimensional(input_shape):
        return LOW_DIM_UNITS, LOW_DIM_ACTIVATION
    return DEFAULT_UNITS, DEFAULT_ACTIVATION


def default_activation(input_shape, num_layers) -> tuple:
    """The default activation of each of ``num_layers`` hidden layers: up to
    :data:`LOW_DIM` input dimensions FullSort then GroupSort8 (the rule of
    :data:`LOW_DIM_ACTIVATION` at any depth), else GroupSort2."""
    if is_low_dimensional(input_shape):
        return ("fullsort",) + ("groupsort8",) * (num_layers - 1)
    return (DEFAULT_ACTIVATION,) * num_layers


def lipschitz_mlp(input_shape=(2,), units=None, seed=0, name=None, activation=None):
    """1-Lipschitz dense energy net: (SpectralDense → sort)×L → FrobeniusDense(1).

    Args:
        input_shape: shape of one sample, e.g. ``(2,)``; other ranks are flattened.
        units: hidden widths (even numbers; multiples of the group size of a
            ``groupsort4`` or ``groupsort8`` layer); default:
            :func:`default_mlp_shape`.
        seed: seed of every draw of the initialisation (orthogonal kernels and
            deel-lip's power-iteration vectors): one seed gives the same network,
            bit for bit, in every process.
        activation: one of :data:`LIPSCHITZ_ACTIVATIONS` for every layer, or one
            per hidden layer (a sequence, or a comma-separated string such as
            ``"fullsort,groupsort8,groupsort8"``); default:
            :func:`default_activation`.

    Example:
        >>> net = lipschitz_mlp(input_shape=(2,), units=(64, 64))
        >>> net(tf.zeros([5, 2]), training=False).shape
        TensorShape([5, 1])
    """
    auto_units, _ = default_mlp_shape(input_shape)
    units = _check_sizes("units", auto_units if units is None else units)
    if activation is None:
        activation = default_activation(input_shape, len(units))
    activations = layer_activations(activation, len(units))
    for width, act in zip(units, activations):
        group = group_size(act) or 1
        if width % group:
            raise ValueError(
                f"{act} needs units that are multiples of {group}, got {units}"
            )
    layers = [keras.layers.Input(tuple(input_shape))]
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten())
    for i, (width, act) in enumerate(zip(units, activations)):
        layers += [
            SpectralDense(width, kernel_initializer=_spectral_init(seed + i)),
            _sorting_activation(act),
        ]
    layers.append(FrobeniusDense(1, kernel_initializer=_spectral_init(seed + 99)))
    net = keras.Sequential(layers, name=name or "lipschitz_mlp")
    return seed_power_iterations(net, seed)


def unconstrained_mlp(
    input_shape=(2,), units=DEFAULT_UNITS, activation="groupsort2", seed=0, name=None
):
    """The same shapes as :func:`lipschitz_mlp` with plain ``Dense`` layers.

    ``activation`` is GroupSort2 by default (same function family, so only the
    constraint differs); ``"swish"`` or ``"relu"`` give the usual EBM MLP.
    """
    units = _check_sizes("units", units)
    layers = [keras.layers.Input(tuple(input_shape))]
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten())
    for i, width in enumerate(units):
        init = keras.initializers.Orthogonal(seed=seed + i)
        layers += [keras.layers.Dense(width, kernel_initializer=init)]
        layers.append(_activation(activation))
    init = keras.initializers.Orthogonal(seed=seed + 99)
    layers.append(keras.layers.Dense(1, kernel_initializer=init))
    return keras.Sequential(layers, name=name or "unconstrained_mlp")


def lipschitz_convnet(
    input_shape=(8, 8, 1), filters=DEFAULT_FILTERS, dense_units=128, seed=0, name=None
):
    """1-Lipschitz convolutional energy net for small images (e.g. 8×8 digits).

    Per stage: SpectralConv2D(3×3) → GroupSort2 → ScaledL2NormPooling2D(2), then
    Flatten → SpectralDense → GroupSort2 → FrobeniusDense(1). ``seed`` seeds
    every draw of the initialisation, as in :func:`lipschitz_mlp`.
    """
    shape = _check_shape(input_shape, 3)
    filters = _check_sizes("filters", filters)
    layers = [keras.layers.Input(shape)]
    for i, width in enumerate(filters):
        layers += [
            SpectralConv2D(width, 3, kernel_initializer=_spectral_init(seed + i)),
            GroupSort2(),
            ScaledL2NormPooling2D(pool_size=2),
        ]
    layers += [
        keras.layers.Flatten(),
        SpectralDense(dense_units, kernel_initializer=_spectral_init(seed + 50)),
        GroupSort2(),
        FrobeniusDense(1, kernel_initializer=_spectral_init(seed + 99)),
    ]
    net = keras.Sequential(layers, name=name or "lipschitz_convnet")
    return seed_power_iterations(net, seed)


def unconstrained_convnet(
    input_shape=(8, 8, 1),
    filters=DEFAULT_FILTERS,
    dense_units=128,
    activation="groupsort2",
    seed=0,
    name=None,
):
    """The same shapes as :func:`lipschitz_convnet` with plain Keras layers."""
    shape = _check_shape(input_shape, 3)
    filters = _check_sizes("filters", filters)
    layers = [keras.layers.Input(shape)]
    for i, width in enumerate(filters):
        init = keras.initializers.Orthogonal(seed=seed + i)
        layers += [
            keras.layers.Conv2D(width, 3, padding="same", kernel_initializer=init),
            _activation(activation),
            keras.layers.AveragePooling2D(pool_size=2),
        ]
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(
            dense_units,
            kernel_initializer=keras.initializers.Orthogonal(seed=seed + 50),
        ),
        _activation(activation),
        keras.layers.Dense(
            1, kernel_initializer=keras.initializers.Orthogonal(seed=seed + 99)
        ),
    ]
    return keras.Sequential(layers, name=name or "unconstrained_convnet")


NETWORKS = {
    "lipschitz_mlp": lipschitz_mlp,
    "unconstrained_mlp": unconstrained_mlp,
    "lipschitz_convnet": lipschitz_convnet,
    "unconstrained_convnet": unconstrained_convnet,
}


def _classifier_body(input_shape, units, filters, dense_units, seed, dense, conv, act):
    """The layers of a classifier before its last (C-logit) layer."""
    shape = tuple(input_shape)
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"input_shape must be positive ints, got {input_shape!r}")
    layers = [keras.layers.Input(shape)]
    if len(shape) == 3:  # images: convolutions, then a dense layer
        for i, width in enumerate(_check_sizes("filters", filters)):
            layers += conv(width, i)
        layers += [keras.layers.Flatten()] + dense(dense_units, 50) + [act()]
        return layers
    if len(shape) > 1:
        layers.append(keras.layers.Flatten())
    for i, width in enumerate(_check_sizes("units", units)):
        layers += dense(width, i) + [act()]
    return layers


def _check_num_classes(num_classes):
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 2
    ):
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return int(num_classes)


def lipschitz_classifier(
    input_shape,
    num_classes,
    units=DEFAULT_UNITS,
    filters=DEFAULT_FILTERS,
    dense_units=128,
    seed=0,
    name=None,
):
    """A deel-lip classifier with ``num_classes`` logits, 1-Lipschitz as a map
    to ``R^C`` (L2 norms on both sides).

    Images (``input_shape`` of rank 3): per stage SpectralConv2D(3×3) →
    GroupSort2 → ScaledL2NormPooling2D(2), then Flatten → SpectralDense
    (``dense_units``) → GroupSort2; other shapes (flattened): (SpectralDense →
    GroupSort2) per entry of ``units``. The last layer is a
    ``SpectralDense(num_classes)``: its rows are orthonormal, so the logit
    vector is 1-Lipschitz, each margin ``f_i − f_j`` is √2-Lipschitz
    (:func:`logit_margin_factor`) and ``−logsumexp(k f)`` is k-Lipschitz.
    ``seed`` seeds every draw of the initialisation, as in :func:`lipschitz_mlp`.

    Example:
        >>> net = lipschitz_classifier((8, 8, 1), num_classes=10)
        >>> net(tf.zeros([5, 8, 8, 1]), training=False).shape
        TensorShape([5, 10])
    """
    num_classes = _check_num_classes(num_classes)

    def dense(width, i):
        return [SpectralDense(width, kernel_initializer=_spectral_init(seed + i))]

    def conv(width, i):
        init = _spectral_init(seed + i)
        return [
            SpectralConv2D(width, 3, kernel_initializer=init),
            GroupSort2(),
            ScaledL2NormPooling2D(pool_size=2),
        ]

    layers = _classifier_body(
        input_shape, units, filters, dense_units, seed, dense, conv, GroupSort2
    )
    layers += dense(num_classes, 99)
    net = keras.Sequential(layers, name=name or "lipschitz_classifier")
    return seed_power_iterations(net, seed)


def unconstrained_classifier(
    input_shape,
    num_classes,
    units=DEFAULT_UNITS,
    filters=DEFAULT_FILTERS,
    dense_units=128,
    activation="groupsort2",
    seed=0,
    name=None,
):
    """The same shapes as :func:`lipschitz_classifier` with plain Keras layers
    (``Conv2D`` + ``AveragePooling2D``, ``Dense``): the unconstrained JEM."""
    num_classes = _check_num_classes(num_classes)

    def dense(width, i):
        init = keras.initializers.Orthogonal(seed=seed + i)
        return [keras.layers.Dense(width, kernel_initializer=init)]

    def conv(width, i):
        init = keras.initializers.Orthogonal(seed=seed + i)
        return [
            keras.layers.Conv2D(width, 3, padding="same", kernel_initializer=init),
            _activation(activation),
            keras.layers.AveragePooling2D(pool_size=2),
        ]

    layers = _classifier_body(
        input_shape,
        units,
        filters,
        dense_units,
        seed,
        dense,
        conv,
        lambda: _activation(activation),
    )
    layers += dense(num_classes, 99)
    return keras.Sequential(layers, name=name or "unconstrained_classifier")


CLASSIFIERS = {
    "lipschitz_classifier": lipschitz_classifier,
    "unconstrained_classifier": unconstrained_classifier,
}


def logit_margin_factor(network) -> float:
    """The Lipschitz constant of a logit margin ``f_i − f_j`` of a 1-Lipschitz
    classifier: √2 when the logit vector is 1-Lipschitz as a whole (a last
    ``SpectralDense``, or ``FrobeniusDense(disjoint_neurons=False)``), 2 when
    only each logit is (a last ``FrobeniusDense`` with disjoint neurons,
    deel-lip's default), as in deel-lip's ``CategoricalProvableRobustAccuracy``.
    """
    weighted = [layer for layer in flat_layers(network) if layer.trainable_weights]
    last = weighted[-1] if weighted else None
    if isinstance(last, FrobeniusDense) and getattr(last, "disjoint_neurons", True):
        return 2.0
    return float(np.sqrt(2.0))
