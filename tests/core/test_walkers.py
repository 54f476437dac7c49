"""Jarzynski-weighted walkers: the weights remove the bias of unadjusted
Langevin moves, carry the walkers across parameter changes, and the model
trains, saves and stays certified with them."""

import numpy as np
import pytest
from conftest import max_grad_norm, mixture_2d

import deel_ebm
from deel_ebm._backend import tf
from deel_ebm.core import JarzynskiWalkers, LangevinSampler, MALASampler

SIGMA = 0.5


def gaussian_energy(scale=1.0):
    return lambda x: scale * 0.5 * tf.reduce_sum(tf.square(x), axis=1) / SIGMA**2


def run_walkers(walkers, energy_fn, sampler, rounds, seed=0):
    """``rounds`` advance + commit cycles; the last weighted walkers."""
    walkers.build((None, 2))
    for r in range(rounds):
        x, log_w, e, _, resampled = walkers.advance(
            energy_fn, sampler, (-3.0, 3.0), tf.constant([seed, r], tf.int64)
        )
        walkers.commit(x, log_w, e, resampled)
    return x.numpy(), tf.nn.softmax(log_w).numpy()


def test_weights_remove_the_bias_of_unadjusted_langevin():
    # ULA with a large step oversamples the tails of N(0, SIGMA^2 I): its
    # stationary variance is SIGMA^2 / (1 - eta / (2 SIGMA^2)) = 1.6 SIGMA^2 here.
    # The Jarzynski weights make the walkers an importance sample of the target.
    eta = 0.75 * SIGMA**2
    sampler = LangevinSampler(num_steps=5, step_size=eta)
    walkers = JarzynskiWalkers(4096, resample_ess=0.3)
    x, w = run_walkers(walkers, gaussian_energy(), sampler, rounds=30)
    true = 2 * SIGMA**2  # E|x|^2 in 2D
    unweighted = np.mean(np.sum(x**2, axis=1))
    weighted = np.sum(w * np.sum(x**2, axis=1))
    assert unweighted > 1.4 * true  # the bias the weights must remove
    assert abs(weighted / true - 1) < 0.12, (weighted, true, unweighted)


def test_weights_follow_a_parameter_change():
    # walkers of p0 = N(0, SIGMA^2), then the energy doubles (p1 = N(0, SIGMA^2/2))
    # with exact moves (MALA: no move weight), the weights alone must carry the
    # walkers to p1 at the first step after the change
    sampler = MALASampler(num_steps=1, step_size=1e-6)  # (almost) no move
    walkers = JarzynskiWalkers(8192, resample_ess=1e-6)
    run_walkers(
        walkers, gaussian_energy(1.0), MALASampler(num_steps=30, step_size=0.1), 1
    )
    walkers.log_weights.assign(tf.zeros([8192]))  # an equally weighted p0 sample
    x, w = run_walkers(walkers, gaussian_energy(2.0), sampler, rounds=1, seed=1)
    weighted = np.sum(w * np.sum(x**2, axis=1))
    assert abs(weighted / SIGMA**2 - 1) < 0.1  # E|x|^2 = 2 * SIGMA^2 / 2


def test_resampling_resets_degenerate_weights():
    walkers = JarzynskiWalkers(256, resample_ess=0.9)
    sampler = LangevinSampler(num_steps=3, step_size=0.2)
    run_walkers(walkers, gaussian_energy(), sampler, rounds=5)
    assert walkers.resamples.numpy() >= 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_walkers"):
        JarzynskiWalkers(1)
    with pytest.raises(ValueError, match="resample_ess"):
        JarzynskiWalkers(16, resample_ess=0.0)
    net = deel_ebm.nets.lipschitz_mlp((2,), units=(16, 16))
    with pytest.raises(ValueError, match="init_temperature"):
        deel_ebm.EnergyModel(
            net,
            walkers=JarzynskiWalkers(16),
            sampler=LangevinSampler(init_temperature=3.0),
        )
    proposal = deel_ebm.core.proposals.MixtureProposal()
    with pytest.raises(ValueError, match="not both"):
        deel_ebm.EnergyModel(net, walkers=JarzynskiWalkers(16), proposal=proposal)


@pytest.mark.slow
def test_a_model_trains_saves_and_stays_certified_with_walkers(tmp_path):
    x, _ = mixture_2d(1024, seed=0)
    net = deel_ebm.nets.lipschitz_mlp((2,), units=(32, 32))
    model = deel_ebm.EnergyModel(
        net,
        k_coef_lip=10.0,
        walkers=JarzynskiWalkers(256),
        buffer=deel_ebm.ReplayBuffer(domain=(-3.0, 3.0)),
        weight_average=None,
    )
    assert model.proposal is None  # walkers replace the default proposal
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    history = model.fit(x, batch_size=256, epochs=3, verbose=0)
    assert 0 < history.history["ess"][-1] <= 1
    assert model.walkers.started.numpy() == 1
    assert max_grad_norm(model, x[:256]) <= 10.0 * (1 + 1e-3)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert isinstance(loaded.walkers, JarzynskiWalkers)
    np.testing.assert_array_equal(loaded.walkers.x.numpy(), model.walkers.x.numpy())
    np.testing.assert_array_equal(
        loaded.walkers.log_weights.numpy(), model.walkers.log_weights.numpy()
    )
    samples = loaded.sample(64, num_steps=2).numpy()  # from the weighted walkers
    assert samples.shape == (64, 2) and np.all(np.isfinite(samples))
    loaded.fit(x, batch_size=256, epochs=1, verbose=0)  # trains on


@pytest.mark.slow
def test_the_command_line_trains_walkers(tmp_path):
    from deel_ebm.app import cli, runs

    out = tmp_path / "w"
    argv = ["train", "--dataset", "rings", "--out", str(out), "--negatives", "walkers"]
    argv += ["--num-negatives", "128", "--epochs", "1", "--n-train", "512"]
    argv += ["--batch-size", "256", "--units", "16", "16", "--quiet"]
    assert cli.main(argv) == 0
    model, _, metrics = runs.load_run(out)
    assert metrics["resolved_config"]["negatives"] == "walkers"
    assert model.walkers.num_walkers == 128 and model.walkers.started.numpy() == 1
