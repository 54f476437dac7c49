"""The sampling base of image models: ``sample()`` starts its chains from a
Gaussian mixture fitted to the data, so the default samples of digits are
digits (not the noise that 40 Langevin steps from the uniform prior give), and
the energy stays certified."""

import numpy as np
import pytest
from conftest import max_grad_norm

import deel_ebm
from deel_ebm import datasets, metrics, nets
from deel_ebm._backend import keras
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
