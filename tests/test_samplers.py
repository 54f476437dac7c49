"""Sampler contract and statistical correctness (fixed seeds, stated tolerances)."""

import numpy as np
import pytest

from deel_ebm._backend import tf
from deel_ebm.samplers import SAMPLERS, LangevinSampler, MALASampler

MEAN = np.array([1.0, -0.5], np.float32)
COV = np.array([[1.0, 0.6], [0.6, 0.5]], np.float32)
PREC = np.linalg.inv(COV).astype(np.float32)


def gaussian_energy(x):
    d = x - MEAN
    return 0.5 * tf.reduce_sum(tf.matmul(d, PREC) * d, axis=1)


def quadratic(x):
    return 0.5 * tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]) ** 2, axis=1)


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize("cls", list(SAMPLERS.values()))
def test_contract_shapes_and_results(cls):
    sampler = cls(num_steps=5, step_size=0.1)
    x0 = tf.zeros([7, 3, 2])
    x, results = sampler.run(quadratic, x0, seed=[1, 2])
    assert x.shape == x0.shape
    assert 0.0 <= float(results.acceptance_rate) <= 1.0
    assert float(results.grad_norm_max) >= float(results.grad_norm_mean) >= 0.0
    x, _, traj = sampler.run(quadratic, x0, seed=[1, 2], return_trajectory=True)
    assert traj.shape == (6, 7, 3, 2)
    np.testing.assert_array_equal(traj[0], x0)
    np.testing.assert_array_equal(traj[-1], x)


@pytest.mark.parametrize("cls", list(SAMPLERS.values()))
def test_contract_seeded_reproducible(cls):
    sampler = cls(num_steps=10, step_size=0.1)
    a, _ = sampler.run(quadratic, tf.zeros([16, 2]), seed=[3, 4])
    b, _ = sampler.run(quadratic, tf.zeros([16, 2]), seed=[3, 4])
    c, _ = sampler.run(quadratic, tf.zeros([16, 2]), seed=[3, 5])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("cls", list(SAMPLERS.values()))
def test_contract_config_round_trip(cls):
    sampler = cls(
        num_steps=7,
        step_size=0.25,
        domain=(-2, 2),
        init_temperature=2.0,
        anneal_fraction=0.5,
    )
    clone = cls.from_config(sampler.get_config())
    assert clone.get_config() == sampler.get_config()
    assert float(clone.step_size) == pytest.approx(0.25)
    same = tf.keras.utils.deserialize_keras_object(
        tf.keras.utils.serialize_keras_object(sampler)
    )
    assert type(same) is cls


@pytest.mark.parametrize("cls", list(SAMPLERS.values()))
def test_contract_compiled_once(cls):
    sampler = cls(num_steps=5, step_size=0.1)
    chain = sampler.compiled_run(quadratic)
    for i in range(3):
        chain(tf.random.normal([32, 2]), tf.constant([0, i], tf.int64))
    sampler.step_size.assign(0.05)  # a variable: no retrace
    chain(tf.random.normal([32, 2]), tf.constant([0, 9], tf.int64))
    assert chain.experimental_get_tracing_count() == 1


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"step_size": -1e-3}, ValueError),
        ({"step_size": 0.0}, ValueError),
        ({"step_size": float("nan")}, ValueError),
        ({"num_steps": -1}, ValueError),
        ({"num_steps": 2.5}, TypeError),
        ({"noise_scale": 0.0}, ValueError),
        ({"init_temperature": 0.5}, ValueError),
        ({"anneal_fraction": 1.5}, ValueError),
        ({"domain": (1.0, -1.0)}, ValueError),
        ({"jit_compile": "yes"}, ValueError),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, error):
    with pytest.raises(error):
        LangevinSampler(**kwargs)


def test_mala_refuses_noise_scale():
    with pytest.raises(ValueError, match="noise_scale"):
        MALASampler(noise_scale=0.5)


def test_domain_clipping_keeps_states_inside():
    sampler = LangevinSampler(num_steps=20, step_size=0.5, domain=(-1.0, 1.0))
    x, _ = sampler.run(lambda x: tf.reduce_sum(0.0 * x, 1), tf.zeros([256, 2]), [0, 1])
    assert float(tf.reduce_max(tf.abs(x))) <= 1.0


def test_drift_is_bounded_by_step_times_gradient_norm():
    # one noiseless-in-expectation check: with a k-Lipschitz energy one step moves
    # a point by at most eta*k plus the noise term
    k, eta = 5.0, 0.01
    energy = lambda x: k * tf.norm(x - 3.0, axis=1)  # noqa: E731  (k-Lipschitz)
    sampler = LangevinSampler(num_steps=1, step_size=eta, noise_scale=1e-6)
    x0 = tf.random.normal([512, 2])
    x, results = sampler.run(energy, x0, seed=[0, 0])
    assert float(results.grad_norm_max) <= k * (1 + 1e-5)
    assert float(tf.reduce_max(tf.norm(x - x0, axis=1))) <= eta * k * (1 + 1e-3)


# ------------------------------------------------------------------ statistics
def _moments(x):
    x = np.asarray(x, np.float64)
    return x.mean(0), np.cov(x.T)


@pytest.mark.slow
def test_langevin_reproduces_gaussian_moments():
    # 4000 independent chains, 400 steps of size 0.01: the ULA bias on the
    # covariance is O(eta) ~ 1 %, the Monte Carlo error of the mean ~ 0.02.
    sampler = LangevinSampler(num_steps=400, step_size=0.01)
    x0 = tf.random.stateless_normal([4000, 2], [5, 5]) * 3.0
    x, _ = sampler.compiled_run(gaussian_energy)(x0, tf.constant([1, 1], tf.int64))
    mean, cov = _moments(x)
    np.testing.assert_allclose(mean, MEAN, atol=0.06)
    np.testing.assert_allclose(cov, COV, atol=0.06)


@pytest.mark.slow
def test_mala_reproduces_gaussian_moments_with_a_large_step():
    # the precision's largest eigenvalue is ~10: at step 0.1 ULA's stationary
    # variance along it is inflated by 1 / (1 - eta*lambda/2) (measured: 0.077 off
    # on cov[1, 1]); MALA's MH test removes that bias (measured: 0.035).
    x0 = tf.random.stateless_normal([4000, 2], [6, 6])
    mala = MALASampler(num_steps=300, step_size=0.1)
    x, results = mala.compiled_run(gaussian_energy)(x0, tf.constant([2, 2], tf.int64))
    mean, cov = _moments(x)
    np.testing.assert_allclose(mean, MEAN, atol=0.06)
    np.testing.assert_allclose(cov, COV, atol=0.06)
    assert 0.2 < float(results.acceptance_rate) < 0.95
    ula = LangevinSampler(num_steps=300, step_size=0.1)
    y, _ = ula.compiled_run(gaussian_energy)(x0, tf.constant([2, 2], tf.int64))
    _, cov_ula = _moments(y)
    # the unadjusted chain is measurably wrong at this step size: MALA is the fix
    assert np.abs(cov_ula - COV).max() > max(0.06, 1.5 * np.abs(cov - COV).max())


def test_temperature_schedule():
    sampler = LangevinSampler(num_steps=10, init_temperature=4.0, anneal_fraction=0.5)
    temps = [float(sampler._temperature(t, 10)) for t in range(10)]
    assert temps[0] == pytest.approx(4.0)
    assert temps[4:] == pytest.approx([1.0] * 6)
    assert all(a > b for a, b in zip(temps[:4], temps[1:5]))


@pytest.mark.slow
def test_annealed_chain_ends_on_the_target():
    # annealed over the first 300 steps, then 500 steps at T = 1: the slowest mode
    # relaxes in 1 / (eta * lambda_min) ~ 140 steps, so the hot start is forgotten
    sampler = LangevinSampler(
        num_steps=800, step_size=0.01, init_temperature=4.0, anneal_fraction=0.375
    )
    x0 = tf.random.stateless_normal([4000, 2], [7, 7])
    x, _ = sampler.compiled_run(gaussian_energy)(x0, tf.constant([3, 3], tf.int64))
    mean, cov = _moments(x)
    np.testing.assert_allclose(mean, MEAN, atol=0.08)
    np.testing.assert_allclose(cov, COV, atol=0.1)


@pytest.mark.slow
def test_mala_agrees_with_tensorflow_probability():
    # tfp's reference MALA on the same target: both sample N(MEAN, COV) exactly
    import tensorflow_probability as tfp

    x0 = tf.random.stateless_normal([2000, 2], [8, 8])
    kernel = tfp.mcmc.MetropolisAdjustedLangevinAlgorithm(
        target_log_prob_fn=lambda x: -gaussian_energy(x), step_size=0.1
    )

    @tf.function(jit_compile=True)
    def reference():
        return tfp.mcmc.sample_chain(
            num_results=1,
            num_burnin_steps=300,
            current_state=x0,
            kernel=kernel,
            trace_fn=None,
            seed=[1, 2],
        )[0]

    ours, _ = MALASampler(num_steps=300, step_size=0.1).compiled_run(gaussian_energy)(
        x0, tf.constant([4, 4], tf.int64)
    )
    for x in (reference(), ours):
        mean, cov = _moments(x)
        np.testing.assert_allclose(mean, MEAN, atol=0.08)
        np.testing.assert_allclose(cov, COV, atol=0.08)
