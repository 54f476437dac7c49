"""deel-lip layers lose their nested @tf.function, and compute the same values."""

import numpy as np
from deel.lip.layers import GroupSort, GroupSort2, SpectralConv2D, SpectralDense

from deel_ebm import _deel_lip_compat
from deel_ebm._backend import tf


def test_decorated_calls_are_plain_functions_after_import():
    assert {"GroupSort", "SpectralDense"} <= set(_deel_lip_compat.UNDECORATED)
    for cls in (GroupSort, GroupSort2, SpectralDense, SpectralConv2D):
        assert not hasattr(cls.call, "python_function"), cls.__name__
    assert _deel_lip_compat.undecorate_deel_lip_calls() == []  # idempotent


def test_undecorated_layers_compute_the_reference_values():
    tf.keras.utils.set_random_seed(0)
    dense, sort = SpectralDense(8), GroupSort2()
    x = tf.random.normal([16, 4])
    out_train = sort(dense(x, training=True))
    wbar = dense.wbar.numpy()
    # the constrained kernel has spectral norm 1 and the layer uses it
    np.testing.assert_allclose(np.linalg.norm(wbar, 2), 1.0, atol=2e-3)
    z = (x.numpy() @ wbar + dense.bias.numpy()).reshape(16, 4, 2)
    expected = np.sort(z, axis=-1).reshape(16, 8)
    np.testing.assert_allclose(out_train.numpy(), expected, rtol=1e-5, atol=1e-6)
    graph = tf.function(lambda v: sort(dense(v, training=False)), jit_compile=True)
    np.testing.assert_allclose(graph(x).numpy(), expected, rtol=1e-5, atol=1e-6)
