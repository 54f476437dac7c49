"""Replica exchange: the ladder from k, mode hopping the plain chain cannot do,
the exact T = 1 marginal, and the kernel contract (serialisation, the model)."""

import numpy as np
import pytest
from conftest import small_model

import deel_ebm
from deel_ebm._backend import tf
from deel_ebm.core.samplers import (
    MALASampler,
    ReplicaExchange,
    sample_chain,
    temperature_ladder,
)

CENTRE, SIGMA = 2.5, 0.4


def two_modes(x):
    """Two equal Gaussian modes at (+-CENTRE, 0), width SIGMA."""
    d_left = tf.reduce_sum(tf.square(x - [[-CENTRE, 0.0]]), axis=1)
    d_right = tf.reduce_sum(tf.square(x - [[CENTRE, 0.0]]), axis=1)
    stacked = tf.stack([-d_left, -d_right], axis=1) / (2 * SIGMA**2)
    return -tf.reduce_logsumexp(stacked, axis=1)


def test_ladder_from_the_lipschitz_bound():
    ladder = temperature_ladder(40.0, 1.0)
    assert ladder[0] == 1.0 and ladder[-1] == pytest.approx(20.0)
    ratios = np.diff(np.log(ladder))
    assert np.allclose(ratios, ratios[0]) and np.exp(ratios[0]) <= 2.0 + 1e-9
    assert temperature_ladder(1.0, 0.5) == (1.0, 2.0)  # no real gap: the least
    with pytest.raises(ValueError, match="gap"):
        temperature_ladder(10.0, 0.0)


@pytest.mark.slow
def test_tempering_hops_between_modes_the_plain_chain_cannot_leave():
    x0 = tf.tile([[-CENTRE, 0.0]], [2000, 1])
    inner = MALASampler(num_steps=300, step_size=0.04)
    plain = sample_chain(inner, two_modes, x0, seed=[0, 1]).state.x.numpy()
    # barrier: E rises by CENTRE^2 / (2 SIGMA^2) = 19.5 between the modes
    tempered = ReplicaExchange(inner, temperatures=temperature_ladder(8.0, 2 * CENTRE))
    out = sample_chain(tempered, two_modes, x0, seed=[0, 1])
    x = out.state.x.numpy()
    assert x.shape == (2000, 2)  # the T = 1 replicas only
    assert np.mean(plain[:, 0] > 0) < 0.01
    right = np.mean(x[:, 0] > 0)
    assert abs(right - 0.5) < 0.1, right
    # the T = 1 marginal within a mode: width SIGMA across the modes' axis
    assert abs(np.std(x[:, 1]) / SIGMA - 1) < 0.1


def test_contract_and_serialisation():
    kernel = ReplicaExchange(MALASampler(num_steps=3), temperatures=(1.0, 3.0))
    again = ReplicaExchange.from_config(kernel.get_config())
    assert again.temperatures == (1.0, 3.0) and again.num_steps == 3
    assert again.is_calibrated
    assert kernel.copy(temperatures=(1.0, 2.0, 4.0)).num_replicas == 3
    with pytest.raises(ValueError, match="increase from 1.0"):
        ReplicaExchange(MALASampler(), temperatures=(2.0, 4.0))
    with pytest.raises(ValueError, match="anneal"):
        ReplicaExchange(MALASampler(init_temperature=2.0))


def test_a_model_samples_and_trains_with_replica_exchange():
    model = small_model(steps=4)
    kernel = ReplicaExchange(MALASampler(num_steps=4, step_size=1e-2), (1.0, 4.0))
    x = model.sample(32, sampler=kernel).numpy()
    assert x.shape == (32, 2) and np.all(np.isfinite(x))
    tempered = deel_ebm.EnergyModel(
        deel_ebm.nets.lipschitz_mlp((2,), units=(16, 16)),
        k_coef_lip=5.0,
        sampler=kernel,
        buffer=deel_ebm.ReplayBuffer(capacity=256, domain=(-3.0, 3.0)),
        proposal=None,
        weight_average=None,
    )
    tempered.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    data = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")
    history = tempered.fit(data, batch_size=64, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    loaded = deel_ebm.EnergyModel.from_config(tempered.get_config())
    assert isinstance(loaded.sampler, ReplicaExchange)


@pytest.mark.slow
def test_the_command_line_trains_with_tempering(tmp_path):
    from deel_ebm.app import cli, runs

    out = tmp_path / "t"
    argv = ["train", "--dataset", "8gaussians", "--out", str(out), "--negatives"]
    argv += ["chains", "--sampler", "tempering", "--k", "8", "--tempering-gap", "2"]
    argv += ["--epochs", "1", "--n-train", "512", "--batch-size", "128"]
    argv += ["--buffer-size", "512", "--num-steps", "3", "--units", "16", "16"]
    assert cli.main([*argv, "--quiet"]) == 0
    model, _, _ = runs.load_run(out)
    assert isinstance(model.sampler, ReplicaExchange)
    assert model.sampler.temperatures == temperature_ladder(8.0, 2.0)
