"""The conditions of the study: which energy network, which k, which penalty.

Every condition is built by :func:`build_model` from a name, a sample shape,
hidden widths, a seed and the training scheme (``"default"``: ``EnergyModel``'s
default for the data; ``"pcd"``: plain persistent chains of ULA with the CD loss).
"""

from __future__ import annotations

import warnings

import deel_ebm
from deel_ebm import keras

# isort: split
import tensorflow as tf

#: deel-lip energies at a fixed k
FIXED_K = (5.0, 10.0, 20.0, 40.0)
#: the learned k: start and cap (main's low-dimension default)
LEARN_K_START, LEARN_K_MAX = 20.0, 80.0
#: the k of the spectrally normalised net (an approximately 1-Lipschitz f)
SN_K = 20.0
#: gradient penalty (two-sided, WGAN-GP style): weight and the target norm
GP_WEIGHT, GP_TARGET = 0.1, 20.0

CONDITIONS = (
    "lip-k5",
    "lip-k10",
    "lip-k20",
    "lip-k40",
    "lip-learnk",
    "twin",
    "swish",
    "specnorm",
    "gradpen",
)
#: conditions whose energy carries a certified Lipschitz constant
CERTIFIED = ("lip-k5", "lip-k10", "lip-k20", "lip-k40", "lip-learnk")
#: the unconstrained and soft-constrained conditions (the report's "others")
UNCONSTRAINED = ("twin", "swish", "specnorm", "gradpen")

DESCRIPTIONS = {
    "lip-k5": "deel-lip MLP (SpectralDense + GroupSort2), E = 5 f",
    "lip-k10": "deel-lip MLP, E = 10 f",
    "lip-k20": "deel-lip MLP, E = 20 f",
    "lip-k40": "deel-lip MLP, E = 40 f",
    "lip-learnk": f"deel-lip MLP, k learned from {LEARN_K_START:g} within "
    f"{LEARN_K_MAX:g}",
    "twin": "same-shape unconstrained twin (Dense + GroupSort2), E = f",
    "swish": "plain MLP (Dense + swish), E = f",
    "specnorm": f"SpectralNormalization(Dense) + GroupSort2, E = {SN_K:g} f",
    "gradpen": f"unconstrained twin + penalty {GP_WEIGHT:g} mean((|grad E| - "
    f"{GP_TARGET:g})^2), E = f",
}


class GradientPenaltyEnergyModel(deel_ebm.EnergyModel):
    """An EnergyModel whose training loss adds a soft Lipschitz penalty.

    In training mode, ``call`` adds ``weight * mean((||grad_x E|| - target)^2)``
    over the batch (data and negatives) to ``self.losses``, which ``train_step``
    adds to the loss: the soft (WGAN-GP style) counterpart of a gradient-norm
    preserving deel-lip energy ``E = target * f``.
    """

    def __init__(self, network, gp_weight=GP_WEIGHT, gp_target=GP_TARGET, **kw):
        self.gp_weight, self.gp_target = float(gp_weight), float(gp_target)
        super().__init__(network, **kw)

    def call(self, inputs, training=False):
        if not training:
            return super().call(inputs, training=False)
        x = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(x)
            energies = super().call(x, training=True)
        grad = tape.gradient(energies, x)
        norm = tf.sqrt(tf.reduce_sum(tf.reshape(grad, [tf.shape(x)[0], -1]) ** 2, 1))
        self.add_loss(self.gp_weight * tf.reduce_mean((norm - self.gp_target) ** 2))
        return energies


def _sn_mlp(input_shape, units, seed):
    layers = [keras.layers.Input(tuple(input_shape))]
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten())
    for i, width in enumerate(units):
        init = keras.initializers.Orthogonal(seed=seed + i)
        dense = keras.layers.Dense(width, kernel_initializer=init)
        layers += [keras.layers.SpectralNormalization(dense), GroupSort2()]
    init = keras.initializers.Orthogonal(seed=seed + 99)
    dense = keras.layers.Dense(1, kernel_initializer=init)
    layers.append(keras.layers.SpectralNormalization(dense))
    return keras.Sequential(layers, name="specnorm_mlp")


def GroupSort2():  # noqa: N802 - a layer factory
    from deel.lip.activations import GroupSort2 as layer

    return layer()


def network(condition, input_shape, units, seed):
    """The energy network ``f`` of a condition."""
    units = tuple(units)
    if condition.startswith("lip-"):
        return deel_ebm.nets.lipschitz_mlp(
            input_shape=input_shape, units=units, seed=seed, activation="groupsort2"
        )
    if condition in ("twin", "gradpen"):
        return deel_ebm.nets.unconstrained_mlp(
            input_shape=input_shape, units=units, activation="groupsort2", seed=seed
        )
    if condition == "swish":
        return deel_ebm.nets.unconstrained_mlp(
            input_shape=input_shape, units=units, activation="swish", seed=seed
        )
    if condition == "specnorm":
        return _sn_mlp(input_shape, units, seed)
    raise ValueError(f"unknown condition {condition!r}; one of {CONDITIONS}")


def k_arguments(condition) -> dict:
    """EnergyModel's k arguments of a condition."""
    if condition == "lip-learnk":
        return {"k_coef_lip": LEARN_K_START, "learn_k": True, "k_max": LEARN_K_MAX}
    if condition.startswith("lip-k"):
        return {"k_coef_lip": float(condition[len("lip-k") :]), "learn_k": False}
    if condition == "specnorm":
        return {"k_coef_lip": SN_K, "learn_k": False}
    return {"k_coef_lip": 1.0, "learn_k": False}


def build_model(condition, input_shape, units, seed, lr, scheme="default", **kw):
    """A compiled EnergyModel of ``condition``.

    ``scheme="default"``: ``EnergyModel``'s default for the data (in 2D the
    importance-sampled maximum likelihood with a mixture proposal); ``"pcd"``:
    ``proposal=None``, ``loss="cd"`` and the ``sampler``/``buffer`` in ``kw``.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; one of {CONDITIONS}")
    net = network(condition, input_shape, units, seed)
    args = dict(k_arguments(condition), seed=seed, **kw)
    if scheme == "pcd":
        args.update(proposal=None, loss="cd", weight_average=None)
    elif scheme != "default":
        raise ValueError(f"unknown scheme {scheme!r}: 'default' or 'pcd'")
    cls = GradientPenaltyEnergyModel if condition == "gradpen" else deel_ebm.EnergyModel
    with warnings.catch_warnings():  # unconstrained nets warn: expected here
        warnings.filterwarnings("ignore", message="EnergyModel: the network has")
        model = cls(net, **args)
    model.compile(optimizer=tf.keras.optimizers.Adam(lr))
    return model


def certified_k(model, condition) -> float:
    """The Lipschitz constant a certificate may use: ``k`` for deel-lip nets,
    ``k`` times the product of layer norms (a loose upper bound) otherwise."""
    if condition in CERTIFIED:
        return float(model.k_coef_lip)
    if condition == "specnorm":  # GroupSort2 is 1-Lipschitz: product of the norms
        bound = 1.0
        for layer in model.network.layers:
            if isinstance(layer, keras.layers.SpectralNormalization):
                kernel = layer.layer.kernel.numpy()
                bound *= deel_ebm.certificates.spectral_norm(kernel)
    else:
        bound = deel_ebm.certificates.lipschitz_upper_bound(model.network)
    return float(model.k_coef_lip) * float(bound)
