"""The sampling base of image models: ``sample()`` starts its chains from a
Gaussian mixture fitted to the data, so the default samples of digits are
digits (not the noise that 40 Langevin steps from the uniform prior give), and
the energy stays certified."""

import numpy as np
import pytest
from conftest import max_grad_norm

import deel_ebm
from deel_ebm import datasets, metrics, nets
from deel_ebm._backend import keras, tf
from deel_ebm.core import JarzynskiWalkers
from deel_ebm.core.proposals import MixtureProposal


def digits_model():
    return deel_ebm.EnergyModel(nets.lipschitz_mlp((8, 8, 1), seed=0))


def test_image_models_get_an_unfitted_base_low_dimensional_ones_none():
    model = digits_model()
    assert isinstance(model.base, MixtureProposal) and not model.base.is_fitted
    assert model.base.uniform == 0.0 and model.base.inflate == 1.0
    assert deel_ebm.EnergyModel(nets.lipschitz_mlp((2,))).base is None  # proposal
    walkers = deel_ebm.EnergyModel(
        nets.lipschitz_mlp((8, 8, 1)), walkers=JarzynskiWalkers(16)
    )
    assert walkers.base is None  # sample() starts from the walkers
    assert deel_ebm.EnergyModel(nets.lipschitz_mlp((16, 16, 1))).base is None
    assert deel_ebm.EnergyModel(nets.lipschitz_mlp((8, 8, 1)), base=None).base is None


@pytest.mark.parametrize(
    "base, error, message",
    [("mixture", ValueError, "base must be 'auto'"), (3, TypeError, "base must be")],
)
def test_bad_base_is_one_clear_error(base, error, message):
    with pytest.raises(error, match=message):
        deel_ebm.EnergyModel(nets.lipschitz_mlp((8, 8, 1)), base=base)


def test_a_base_of_another_shape_is_refused():
    base = MixtureProposal(n_components=2).fit(np.zeros((10, 4, 4, 1)) + 0.1)
    with pytest.raises(ValueError, match="base was built for samples of shape"):
        deel_ebm.EnergyModel(nets.lipschitz_mlp((8, 8, 1)), base=base)


@pytest.mark.slow
def test_default_digit_samples_are_digits_and_certified(tmp_path):
    # 10 training steps (about 5 s). Measured: FD of the default samples 1.74,
    # of the old default (40 ULA steps from the uniform prior) 123; train vs
    # test images 0.48, sklearn's BIC GaussianMixture 1.36.
    data = datasets.load_digits(seed=0)
    model = digits_model()
    model.compile(keras.optimizers.Adam(1e-3, beta_1=0.0))
    model.fit(data.x_train, epochs=2, verbose=0)
    assert model.base.is_fitted
    x = model.sample(500, seed=1).numpy()
    x_prior = model.sample(500, init="prior", seed=1).numpy()
    assert metrics.frechet_distance(x, data.x_test) < 5.0
    assert metrics.frechet_distance(x_prior, data.x_test) > 50.0
    assert metrics.mean_confidence(np.clip(x, -1, 1)) > 0.9
    assert np.all(metrics.class_histogram(np.clip(x, -1, 1)) > 0.02)
    assert max_grad_norm(model.energy, x) <= model.k_coef_lip * (1 + 1e-3)
    # saved and loaded: the same fitted base, the same samples
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.base.is_fitted
    np.testing.assert_allclose(
        loaded.sample(50, seed=3).numpy(), model.sample(50, seed=3).numpy()
    )
    config = model.get_config()
    assert config["base"] is not None
    again = deel_ebm.EnergyModel.from_config(config)
    assert isinstance(again.base, MixtureProposal)


# ---------------------------------------------- training chains from the base
def _digits():
    return datasets.load_digits().x_train


def _one_step_chain_model(base_starts, capacity=512):
    """A digits model whose one training step barely moves its chains, so the
    states it writes back to the buffer are its chains' starts."""
    return deel_ebm.EnergyModel(
        nets.lipschitz_mlp((8, 8, 1), units=(32, 32), seed=0),
        sampler=deel_ebm.LangevinSampler(num_steps=1, step_size=1e-8),
        buffer=deel_ebm.ReplayBuffer(capacity=capacity, reinit_prob=0.0),
        base_starts=base_starts,
        weight_average=None,
        seed=3,
    )


def _written_starts(model, x):
    """The buffer rows the first training step wrote: that step's chain starts."""
    before = model.buffer.storage.numpy().copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    model.fit(x[:256], batch_size=256, epochs=1, verbose=0, shuffle=False)
    after = model.buffer.storage.numpy()
    changed = np.any(np.abs(after - before) > 1e-4, axis=(1, 2, 3))
    return after[changed], before[changed]


def _nearest_image_distance(points, images):
    a, b = points.reshape(len(points), -1), images.reshape(len(images), -1)
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2.min(1), 0.0))


def test_base_starts_one_starts_every_training_chain_from_the_base():
    x = _digits()
    model = _one_step_chain_model(1.0)
    starts, _ = _written_starts(model, x)
    assert len(starts) == 256  # one per chain of the step
    near = _nearest_image_distance(starts, x)
    prior = model.buffer.prior_sample(256, seed=[1, 2]).numpy()
    far = _nearest_image_distance(prior, x)
    # the fitted mixture's draws lie among the digits, the uniform prior's not
    assert np.median(near) < 0.5 * np.median(far)
    assert float(np.mean(starts)) == pytest.approx(float(np.mean(x)), abs=0.1)


def test_base_starts_one_half_starts_about_half_the_chains_from_the_base():
    x = _digits()
    model = _one_step_chain_model(0.5)
    starts, _ = _written_starts(model, x)
    prior = model.buffer.prior_sample(256, seed=[1, 2]).numpy()
    threshold = np.quantile(_nearest_image_distance(prior, x), 0.01)
    share = float(np.mean(_nearest_image_distance(starts, x) < threshold))
    # 256 Bernoulli(0.5) picks: within 4 standard deviations (0.125)
    assert 0.375 <= share <= 0.625, share


def test_base_starts_zero_keeps_the_buffer_starts():
    x = _digits()
    model = _one_step_chain_model(0.0)
    starts, before = _written_starts(model, x)
    np.testing.assert_allclose(starts, before, atol=1e-3)  # moved by 1 tiny step


def test_base_starts_defaults_and_bad_values():
    assert digits_model().base_starts == 0.0
    classifier = nets.lipschitz_classifier((8, 8, 1), 10, seed=0)
    joint = deel_ebm.JointEnergyModel(classifier)
    assert joint.base_starts == deel_ebm.JointEnergyModel.DEFAULT_BASE_STARTS == 1.0
    flat = deel_ebm.JointEnergyModel(nets.lipschitz_classifier((2,), 3, seed=0))
    assert flat.base is None and flat.base_starts == 0.0  # no base: the buffer
    for bad, error, message in (
        (-0.1, ValueError, r"base_starts must lie in \[0, 1\]"),
        (1.5, ValueError, r"base_starts must lie in \[0, 1\]"),
        ("all", TypeError, "base_starts must be a number"),
    ):
        with pytest.raises(error, match=message):
            deel_ebm.EnergyModel(nets.lipschitz_mlp((8, 8, 1)), base_starts=bad)
    with pytest.raises(ValueError, match="the model has none"):
        deel_ebm.EnergyModel(nets.lipschitz_mlp((8, 8, 1)), base=None, base_starts=1)


def test_base_starts_is_saved_and_old_saves_read_zero(tmp_path):
    model = _one_step_chain_model(0.25)
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    model.fit(_digits()[:256], batch_size=256, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    assert keras.models.load_model(path).base_starts == 0.25
    config = model.get_config()
    config.pop("base_starts")
    assert deel_ebm.EnergyModel.from_config(config).base_starts == 0.0


def test_a_traced_batch_size_draws_the_same_base_samples():
    base = MixtureProposal(inflate=1.0, uniform=0.1, domain=(-1.0, 1.0), seed=0)
    base.fit(_digits())
    seed = [4, 5]
    eager = base.sample(200, seed).numpy()
    traced = base.sample(tf.constant(200), seed).numpy()
    np.testing.assert_array_equal(eager, traced)
