import numpy as np
import pytest
from deel.lip.layers import GroupSort, LipschitzLayer

from deel_ebm import nets
from deel_ebm._backend import tf

CASES = [
    (nets.lipschitz_mlp, nets.unconstrained_mlp, (2,)),
    (nets.lipschitz_mlp, nets.unconstrained_mlp, (4, 4)),
    (nets.lipschitz_convnet, nets.unconstrained_convnet, (8, 8, 1)),
]


@pytest.mark.parametrize("lip, twin, shape", CASES)
def test_scalar_output_and_twin_shapes(lip, twin, shape):
    kwargs = {"units": (16, 16)} if lip is nets.lipschitz_mlp else {"filters": (8, 8)}
    a, b = lip(shape, **kwargs), twin(shape, **kwargs)
    x = tf.zeros((3, *shape))
    assert a(x, training=False).shape == (3, 1) == b(x).shape
    assert [w.shape for w in a.trainable_weights] == [
        w.shape for w in b.trainable_weights
    ]


@pytest.mark.parametrize("lip, twin, shape", CASES)
def test_lipschitz_builders_use_only_lipschitz_layers(lip, twin, shape):
    kwargs = {"units": (16, 16)} if lip is nets.lipschitz_mlp else {"filters": (8, 8)}
    weighted = [layer for layer in lip(shape, **kwargs).layers if layer.weights]
    assert weighted and all(isinstance(layer, LipschitzLayer) for layer in weighted)
    assert not any(
        isinstance(layer, LipschitzLayer) and layer.weights
        for layer in twin(shape, **kwargs).layers
    )


SEEDED_BUILDS = """
import hashlib, sys
import deel_ebm
import tensorflow as tf
from deel_ebm import nets
built = [
    nets.lipschitz_mlp((2,), units=(8, 8), seed=3),
    nets.lipschitz_convnet((8, 8, 1), filters=(4, 4), dense_units=8, seed=3),
    nets.lipschitz_classifier((8, 8, 1), 3, filters=(4, 4), dense_units=8, seed=3),
]
digest = hashlib.sha256()
for w in (w for net in built for w in net.weights):
    digest.update(w.numpy().tobytes())
if sys.argv[1] == "fit":
    x, _ = deel_ebm.datasets.load_2d("8gaussians", n_train=512, n_test=16)
    model = deel_ebm.EnergyModel(nets.lipschitz_mlp((2,), units=(16, 16)))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    model.fit(x, batch_size=128, epochs=2, verbose=0)
    for w in model.weights:
        digest.update(w.numpy().tobytes())
print(digest.hexdigest())
"""


def _weights(net):
    return [w.numpy() for w in net.weights]


def test_seeded_builders_are_bit_identical_with_every_weight():
    for build in (
        lambda: nets.lipschitz_mlp((2,), units=(8, 8), seed=3),
        lambda: nets.lipschitz_convnet((8, 8, 1), filters=(4, 4), seed=3),
        lambda: nets.lipschitz_classifier((4,), 3, units=(8,), seed=3),
    ):
        a, b = _weights(build()), _weights(build())
        assert len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))
    other = _weights(nets.lipschitz_mlp((2,), units=(8, 8), seed=4))
    assert not np.array_equal(other[0], _weights(nets.lipschitz_mlp((2,), (8, 8)))[0])


@pytest.mark.slow
def test_seeded_networks_and_fit_are_the_same_in_every_process():
    """Fresh interpreters, no global seed: deel-lip's own initializer and layers
    draw their power-iteration vectors unseeded; the builders seed them."""
    import subprocess
    import sys

    def run(what):
        out = subprocess.run(
            [sys.executable, "-c", SEEDED_BUILDS, what],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()[-1]

    assert run("fit") == run("fit")


def test_seed_power_iterations_on_a_network_of_ones_own():
    from deel.lip.initializers import SpectralInitializer
    from deel.lip.layers import SpectralConv2D, SpectralDense

    def build():
        def init(s):
            return SpectralInitializer(
                base_initializer=tf.keras.initializers.Orthogonal(seed=s)
            )

        return tf.keras.Sequential(
            [
                tf.keras.Input((6, 6, 2)),
                SpectralConv2D(4, 3, kernel_initializer=init(1)),
                tf.keras.layers.Flatten(),
                SpectralDense(5, kernel_initializer=init(2)),
            ]
        )

    a, b = build(), build()
    assert not np.array_equal(a.layers[0].u.numpy(), b.layers[0].u.numpy())
    for net in (a, b):
        assert nets.seed_power_iterations(net, seed=5) is net
    for wa, wb in zip(a.weights, b.weights):
        assert np.array_equal(wa.numpy(), wb.numpy()), wa.name
    for layer in (a.layers[0], a.layers[2]):  # still 1-Lipschitz, wbar = kernel
        k = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
        assert np.linalg.svd(k, compute_uv=False).max() <= 1 + 1e-3
        assert np.array_equal(layer.wbar.numpy(), layer.kernel.numpy())
    # the configs are deel-lip's own: the network loads without deel_ebm
    init = a.layers[2].get_config()["kernel_initializer"]
    assert init["class_name"].endswith("SpectralInitializer")
    assert "deel_ebm" not in str(a.get_config())
    c = build()
    nets.seed_power_iterations(c, seed=6)
    assert not np.array_equal(a.layers[0].u.numpy(), c.layers[0].u.numpy())
    assert np.array_equal(a.layers[0].kernel.numpy(), c.layers[0].kernel.numpy())
    with pytest.raises(ValueError, match="built"):
        nets.seed_power_iterations(tf.keras.Sequential([SpectralDense(4)]))
    # a trained network is refused, and nothing of it is touched
    u, kernel = c.layers[2].u.numpy(), c.layers[2].kernel.numpy()
    c.layers[0].kernel.assign_add(tf.fill(c.layers[0].kernel.shape, 1e-2))
    with pytest.raises(ValueError, match="no longer holds its initial kernel"):
        nets.seed_power_iterations(c, seed=7)
    assert np.array_equal(c.layers[2].u.numpy(), u)
    assert np.array_equal(c.layers[2].kernel.numpy(), kernel)


def test_bad_arguments():
    with pytest.raises(ValueError, match="even"):
        nets.lipschitz_mlp((2,), units=(15,))
    with pytest.raises(ValueError, match="input_shape"):
        nets.lipschitz_convnet((8, 8))
    with pytest.raises(ValueError, match="activation"):
        nets.unconstrained_mlp((2,), activation="softmax")


@pytest.mark.parametrize("activation", nets.LIPSCHITZ_ACTIVATIONS)
def test_every_sorting_activation_keeps_the_net_1_lipschitz(activation):
    from deel_ebm import certificates

    net = nets.lipschitz_mlp((2,), units=(16, 16), activation=activation)
    assert not nets.unconstrained_layers(net)
    assert certificates.lipschitz_upper_bound(net) <= 1.0 + 1e-3
    x = tf.constant(np.random.default_rng(0).normal(size=(2000, 2)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = net(x, training=False)
    norms = tf.norm(tape.gradient(y, x), axis=1)
    assert float(tf.reduce_max(norms)) <= 1.0 + 1e-3


def test_bad_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        nets.lipschitz_mlp((2,), activation="relu")
    with pytest.raises(ValueError, match="multiples of 4"):
        nets.lipschitz_mlp((2,), units=(6,), activation="groupsort4")
    with pytest.raises(ValueError, match="groupsort8 needs units that are multiples"):
        nets.lipschitz_mlp((2,), units=(64, 12))  # the default's second layer
    with pytest.raises(ValueError, match="one activation per hidden layer: got 2"):
        nets.lipschitz_mlp((2,), units=(8, 8, 8), activation=("fullsort", "groupsort2"))
    with pytest.raises(ValueError, match="activation must be one of"):
        nets.lipschitz_mlp((2,), units=(8, 8), activation="fullsort,groupsortx")


def _sort_sizes(net):
    return [
        (layer.n, layer.input_shape[-1])
        for layer in net.layers
        if isinstance(layer, GroupSort)
    ]


def test_default_low_dimensional_net_is_fullsort_then_groupsort8():
    net = nets.lipschitz_mlp((2,))
    assert nets.LOW_DIM_UNITS == (64, 128, 128)
    # FullSort sorts its 64 units whole, then groups of 8 of 128
    assert _sort_sizes(net) == [(64, 64), (8, 128), (8, 128)]
    # the rule at any depth; GroupSort2 above LOW_DIM dimensions
    assert nets.default_activation((3,), 4) == ("fullsort",) + ("groupsort8",) * 3
    assert _sort_sizes(nets.lipschitz_mlp((2,), units=(16, 16))) == [(16, 16), (8, 16)]
    assert nets.default_activation((9,), 2) == ("groupsort2", "groupsort2")
    # the net keeps its name, or the caller's (not its last activation's)
    assert net.name == "lipschitz_mlp"
    assert nets.lipschitz_mlp((2,), name="critic").name == "critic"


@pytest.mark.parametrize(
    "activation",
    [("groupsort2", "fullsort"), "groupsort2,fullsort", ["groupsort2", "fullsort"]],
)
def test_one_activation_per_layer(activation):
    net = nets.lipschitz_mlp((2,), units=(16, 8), activation=activation)
    assert _sort_sizes(net) == [(2, 16), (8, 8)]
    assert nets.layer_activations("groupsort4", 3) == ("groupsort4",) * 3
    net16 = nets.lipschitz_mlp((2,), units=(32,), activation="groupsort16")
    assert _sort_sizes(net16) == [(16, 32)]
    for bad in ("groupsort1", "groupsort", "sort8", 8):
        with pytest.raises(ValueError, match="activation must be one of"):
            nets.group_size(bad)
