"""Shared fixtures. deel_ebm is imported first: it selects the Keras 2 API."""

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import deel_ebm  # noqa: E402,F401
from deel_ebm._backend import tf  # noqa: E402


@pytest.fixture(autouse=True)
def _xla_sort(request):
    """Functions traced for XLA sort GroupSort layers by ``tf.sort`` in the
    suite, unless a test is marked ``sorting_network`` (the default for users).

    The network gives exactly ``tf.sort``'s values and permutation gradients
    (tests/test_sorting.py) but costs 3-4 s more XLA compilation per traced
    chain of a FullSort/GroupSort8 net, about 7 minutes over this suite's many
    small models. The user's path runs with it in the marked tests, and in the
    README's, the docs' and the notebooks' examples, run in fresh interpreters."""
    enabled = request.node.get_closest_marker("sorting_network") is not None
    with deel_ebm.nets.sorting_network(enabled):
        yield


def mixture_2d(n, seed=0, radius=2.0, std=0.3, modes=4):
    """Points of a mixture of ``modes`` Gaussians on a circle, and the centres."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(modes) / modes
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x = centres[rng.integers(0, modes, n)] + std * rng.standard_normal((n, 2))
    return x.astype("float32"), centres.astype("float32")


def small_model(
    lipschitz=True,
    k=10.0,
    steps=10,
    step_size=1e-2,
    capacity=1000,
    domain=(-3.0, 3.0),
    reinit_prob=0.05,
    jit_compile="auto",
    lr=1e-3,
    optimizer=None,
    proposal=None,
    loss="cd",
    **kw,
):
    """A small 2D model on the chain path (``proposal=None``) with the CD loss
    and no weight average, unless asked otherwise."""
    if lipschitz:
        net = deel_ebm.nets.lipschitz_mlp((2,), units=(32, 32))
    else:
        net = deel_ebm.nets.unconstrained_mlp((2,), units=(32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = deel_ebm.EnergyModel(
            net,
            k_coef_lip=k,
            sampler=deel_ebm.LangevinSampler(
                num_steps=steps, step_size=step_size, jit_compile=jit_compile
            ),
            buffer=deel_ebm.ReplayBuffer(
                capacity=capacity, reinit_prob=reinit_prob, domain=domain
            ),
            proposal=proposal,
            loss=loss,
            weight_average=kw.pop("weight_average", None),
            **kw,
        )
    model.compile(optimizer=optimizer or tf.keras.optimizers.Adam(lr, beta_1=0.0))
    return model


def max_grad_norm(fn, x):
    """The largest ``‖∇ fn(x_i)‖`` over the samples of ``x`` (any sample shape)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        e = fn(x)
    g = tf.reshape(tape.gradient(e, x), [x.shape[0], -1])
    return float(tf.reduce_max(tf.norm(g, axis=1)))


@pytest.fixture
def data2d():
    return mixture_2d(512)[0]


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.utils.set_random_seed(0)
    yield
