"""The inference pass with convolutions as GEMMs: same function, same certificate."""

import numpy as np
import pytest
from conftest import max_grad_norm

import deel_ebm
from deel_ebm._backend import keras, tf
from deel_ebm.core import gemm_forward


def _grad(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(fn(x) * tf.range(1.0, 1.0 + fn(x).shape[-1]))
    return tape.gradient(out, x)


@pytest.mark.parametrize("kernel", [(3, 3), (2, 2), (1, 3), (5, 5)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_patch_conv2d_is_conv2d(kernel, padding):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((3, 7, 6, 4)), tf.float32)
    w = tf.constant(rng.standard_normal((*kernel, 4, 5)), tf.float32)
    ref = tf.nn.conv2d(x, w, strides=1, padding=padding.upper())
    out = gemm_forward.patch_conv2d(x, w, padding)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    # and its input gradient (slices and pads: the transposed convolution)
    g_ref = _grad(lambda z: tf.nn.conv2d(z, w, 1, padding.upper()), x)
    g = _grad(lambda z: gemm_forward.patch_conv2d(z, w, padding), x)
    np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-5, atol=1e-4)


def test_patch_conv2d_rejects_other_padding():
    with pytest.raises(ValueError, match="padding"):
        gemm_forward.patch_conv2d(
            tf.zeros([1, 4, 4, 1]), tf.zeros([3, 3, 1, 1]), "causal"
        )


@pytest.mark.parametrize(
    "build",
    [
        lambda: deel_ebm.nets.lipschitz_convnet((8, 8, 1)),
        lambda: deel_ebm.nets.unconstrained_convnet((8, 8, 1)),
        lambda: deel_ebm.nets.lipschitz_classifier((8, 8, 1), 10),
    ],
    ids=["lipschitz", "unconstrained", "classifier"],
)
def test_inference_forward_matches_the_network(build):
    net = build()
    net(tf.zeros([1, 8, 8, 1]), training=True)  # deel-lip: fills wbar
    fast = gemm_forward.inference_forward(net, (8, 8, 1))
    assert fast is not None
    x = tf.random.stateless_uniform([32, 8, 8, 1], [3, 4], -1.0, 1.0)
    ref = net(x, training=False)
    np.testing.assert_allclose(fast(x).numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
    g_ref = _grad(lambda z: net(z, training=False), x)
    np.testing.assert_allclose(
        _grad(fast, x).numpy(), g_ref.numpy(), rtol=1e-4, atol=1e-5
    )


def _functional_convnet():
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same")(inp)
    out = keras.layers.Dense(1)(keras.layers.Flatten()(h))
    return keras.Model(inp, out)


class _MyConv(keras.layers.Conv2D):
    def call(self, x):
        return 2.0 * super().call(x)


class Conv2D(keras.layers.Conv2D):  # a subclass with the stock name
    def call(self, x):
        return 2.0 * super().call(x)


@pytest.mark.parametrize(
    "layers",
    [
        [keras.layers.Flatten(), keras.layers.Dense(1)],  # no convolution
        [
            keras.layers.Conv2D(4, 3, strides=2),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ],
        [
            keras.layers.Conv2D(4, 3, dilation_rate=2),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ],
        [_MyConv(4, 3, padding="same"), keras.layers.Flatten(), keras.layers.Dense(1)],
        [Conv2D(4, 3, padding="same"), keras.layers.Flatten(), keras.layers.Dense(1)],
        [
            keras.layers.Conv2DTranspose(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ],
    ],
    ids=["dense", "strided", "dilated", "subclass", "named-subclass", "transpose"],
)
def test_inference_forward_keeps_other_networks(layers):
    net = keras.Sequential([keras.Input((8, 8, 1)), *layers])
    assert gemm_forward.inference_forward(net, (8, 8, 1)) is None


def test_inference_forward_keeps_functional_models():
    assert gemm_forward.inference_forward(_functional_convnet(), (8, 8, 1)) is None


def test_energy_model_uses_it_and_reads_the_current_weights():
    """The GEMM pass reads the cached kernels at run time: after training it
    computes the trained network's energy, and the certificate holds through
    energy() and the chains."""
    tf.keras.utils.set_random_seed(0)
    net = deel_ebm.nets.lipschitz_convnet((8, 8, 1), filters=(4, 8), dense_units=16)
    model = deel_ebm.EnergyModel(
        net,
        k_coef_lip=20.0,
        sampler=deel_ebm.LangevinSampler(num_steps=5, step_size=1e-3),
        buffer=deel_ebm.ReplayBuffer(capacity=256, domain=(-1.0, 1.0)),
        weight_average=None,
    )
    assert model.gemm_convolutions
    x = np.random.default_rng(0).uniform(-1, 1, (64, 8, 8, 1)).astype("float32")
    before = model.energy(x).numpy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, batch_size=32, epochs=2, verbose=0)
    after = model.energy(x).numpy()
    assert np.max(np.abs(after - before)) > 1e-3  # the weights did change
    model.refresh_constraints()
    ref = 20.0 * tf.reshape(net(tf.constant(x), training=False), [-1]).numpy()
    np.testing.assert_allclose(after, ref, rtol=1e-4, atol=1e-4)
    assert max_grad_norm(model.energy, x) <= 20.0 * (1 + 1e-3)
    samples = model.sample(64, num_steps=5)
    assert np.isfinite(samples).all()


def test_gemm_convolutions_can_be_switched_off_and_on():
    net = deel_ebm.nets.lipschitz_convnet((8, 8, 1), filters=(4, 8), dense_units=16)
    model = deel_ebm.EnergyModel(net, k_coef_lip=5.0)
    x = np.random.default_rng(1).uniform(-1, 1, (16, 8, 8, 1)).astype("float32")
    fast = model.energy(x).numpy()
    model.gemm_convolutions = False
    assert not model.gemm_convolutions
    np.testing.assert_allclose(model.energy(x).numpy(), fast, rtol=1e-4, atol=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, batch_size=8, epochs=1, verbose=0)  # traced without the pass
    model.gemm_convolutions = True
    assert model.gemm_convolutions and model.train_function is None
    model.fit(x, batch_size=8, epochs=1, verbose=0)  # traced again, with it
    dense = deel_ebm.EnergyModel(deel_ebm.nets.lipschitz_mlp((2,)))
    assert not dense.gemm_convolutions
    with pytest.raises(ValueError, match="Sequential network"):
        dense.gemm_convolutions = True
    with pytest.raises(TypeError, match="True or False"):
        model.gemm_convolutions = 1


def test_unknown_image_sizes_run_the_layers_own_call():
    net = keras.Sequential(
        [
            keras.Input((None, None, 1)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1),
        ]
    )
    fast = gemm_forward.inference_forward(net, (8, 8, 1))
    assert fast is not None
    traced = tf.function(fast, input_signature=[tf.TensorSpec([None, None, None, 1])])
    x = tf.random.stateless_uniform([2, 12, 12, 1], [5, 6])
    np.testing.assert_allclose(
        traced(x).numpy(), net(x, training=False).numpy(), rtol=1e-5, atol=1e-6
    )
