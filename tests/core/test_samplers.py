"""Sampler contract and statistical correctness (fixed seeds, stated tolerances)."""

import numpy as np
import pytest

from deel_ebm._backend import tf
from deel_ebm.core.samplers import (
    ChainState,
    Kernel,
    LangevinSampler,
    MALASampler,
    MetropolisHastings,
    StepResults,
    compile_chain,
    energy_and_grad,
    mala_log_accept_ratio,
    sample_chain,
    trace_x,
)

MEAN = np.array([1.0, -0.5], np.float32)
COV = np.array([[1.0, 0.6], [0.6, 0.5]], np.float32)
PREC = np.linalg.inv(COV).astype(np.float32)


def gaussian_energy(x):
    d = x - MEAN
    return 0.5 * tf.reduce_sum(tf.matmul(d, PREC) * d, axis=1)


def quadratic(x):
    return 0.5 * tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]) ** 2, axis=1)


def _moments(x):
    x = np.asarray(x, np.float64)
    return x.mean(0), np.cov(x.T)


# ------------------------------------------------------------------ contract
# Every kernel of the library passes the same checks. A new kernel is added here
# with the step size at which it is stationary on the Gaussian target within
# STATIONARY_ATOL (calibrated kernels at a large step, unadjusted ones at a step
# where their O(eta) bias is below the tolerance).
KERNELS = {
    "langevin": (lambda **kw: LangevinSampler(**kw), 0.005),
    "mala": (lambda **kw: MALASampler(**kw), 0.1),
    "mh(langevin)": (
        lambda **kw: MetropolisHastings(LangevinSampler(**kw)),
        0.1,
    ),
}
STATIONARY_ATOL = 0.06  # 4000 chains: Monte Carlo error of a moment ~ 0.02


def _make(name, **kw):
    return KERNELS[name][0](**kw)


@pytest.mark.parametrize("name", list(KERNELS))
def test_contract_shapes_results_and_trace(name):
    kernel = _make(name, num_steps=5, step_size=0.1)
    assert isinstance(kernel, Kernel)
    x0 = tf.zeros([7, 3, 2])
    state = kernel.bootstrap(quadratic, x0)
    assert isinstance(state, ChainState) and int(state.step) == 0
    assert state.energy.shape == (7,) and state.grad.shape == x0.shape
    new, step = kernel.one_step(quadratic, state, tf.constant([0, 1], tf.int64))
    assert isinstance(step, StepResults) and step.accepted.shape == (7,)
    assert new.x.shape == x0.shape and int(new.step) == 1
    out = sample_chain(kernel, quadratic, x0, seed=[1, 2], trace_fn=trace_x)
    assert out.state.x.shape == x0.shape
    assert 0.0 <= float(out.results.acceptance_rate) <= 1.0
    assert float(out.results.grad_norm_max) >= float(out.results.grad_norm_mean) >= 0
    assert out.trace.shape == (5, 7, 3, 2)
    np.testing.assert_array_equal(out.trace[-1], out.state.x)
    assert sample_chain(kernel, quadratic, x0, seed=[1, 2]).trace is None
    zero = sample_chain(kernel, quadratic, x0, seed=[1, 2], num_steps=0)
    np.testing.assert_array_equal(zero.state.x, x0)


@pytest.mark.parametrize("name", list(KERNELS))
def test_contract_seeded_reproducible(name):
    kernel = _make(name, num_steps=10, step_size=0.1)
    a, b, c = (
        sample_chain(kernel, quadratic, tf.zeros([16, 2]), seed=s).state.x
        for s in ([3, 4], [3, 4], [3, 5])
    )
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name", list(KERNELS))
def test_contract_serialisation_and_copy(name):
    kernel = _make(name, num_steps=7, step_size=0.25, init_temperature=2.0)
    clone = type(kernel).from_config(kernel.get_config())
    assert clone.get_config() == kernel.get_config()
    same = tf.keras.utils.deserialize_keras_object(
        tf.keras.utils.serialize_keras_object(kernel)
    )
    assert type(same) is type(kernel)
    assert same.get_config()["name"] == kernel.get_config()["name"]
    copy = kernel.copy()
    assert type(copy) is type(kernel) and copy.num_steps == 7
    assert kernel.is_calibrated == copy.is_calibrated
    with pytest.raises(TypeError, match="unknown fields"):
        kernel.copy(no_such_field=1)


def test_copy_overrides_one_field():
    kernel = MALASampler(num_steps=7, step_size=0.25, domain=(-2, 2))
    longer = kernel.copy(num_steps=50)
    assert longer.num_steps == 50 and longer.domain == (-2.0, 2.0)
    assert float(longer.step_size) == pytest.approx(0.25)
    assert longer.step_size is not kernel.step_size  # its own variables


@pytest.mark.parametrize("name", list(KERNELS))
def test_contract_compiled_once(name):
    kernel = _make(name, num_steps=5, step_size=0.1)
    chain = compile_chain(kernel, quadratic)
    for i in range(3):
        chain(tf.random.normal([32, 2]), tf.constant([0, i], tf.int64))
    kernel_step = kernel.inner_kernel if hasattr(kernel, "inner_kernel") else kernel
    kernel_step.step_size.assign(0.05)  # a variable: no retrace
    chain(tf.random.normal([32, 2]), tf.constant([0, 9], tf.int64))
    assert chain.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("name", list(KERNELS))
def test_contract_stationary_on_a_gaussian(name):
    # chains started from the exact target stay on it: after 200 steps the
    # moments of 4000 chains match N(MEAN, COV) within STATIONARY_ATOL
    factory, step_size = KERNELS[name]
    kernel = factory(num_steps=200, step_size=step_size)
    z = tf.random.stateless_normal([4000, 2], [9, 9])
    x0 = MEAN + tf.matmul(z, np.linalg.cholesky(COV).T.astype(np.float32))
    out = compile_chain(kernel, gaussian_energy)(x0, tf.constant([5, 5], tf.int64))
    mean, cov = _moments(out.state.x)
    np.testing.assert_allclose(mean, MEAN, atol=STATIONARY_ATOL)
    np.testing.assert_allclose(cov, COV, atol=STATIONARY_ATOL)
    if kernel.is_calibrated:
        assert 0.2 < float(out.results.acceptance_rate) < 0.99


def test_metropolis_hastings_needs_a_proposal_density():
    class Blind(LangevinSampler):
        def log_proposal_ratio(self, state, proposed, results):
            return Kernel.log_proposal_ratio(self, state, proposed, results)

    mh = MetropolisHastings(Blind(num_steps=2))
    with pytest.raises(NotImplementedError, match="proposal"):
        sample_chain(mh, quadratic, tf.zeros([4, 2]), seed=[0, 0])
    with pytest.raises(TypeError, match="inner_kernel"):
        MetropolisHastings("langevin")


def test_mala_log_accept_ratio_matches_the_kernel():
    x = tf.random.stateless_normal([64, 2], [1, 1])
    y = x + 0.1 * tf.random.stateless_normal([64, 2], [2, 2])
    (e_x, g_x), (e_y, g_y) = (energy_and_grad(gaussian_energy, v) for v in (x, y))
    value = mala_log_accept_ratio(x, y, e_x, e_y, g_x, g_y, 0.1)
    fwd = np.sum((y - x + 0.1 * g_x) ** 2, axis=1)
    bwd = np.sum((x - y + 0.1 * g_y) ** 2, axis=1)
    np.testing.assert_allclose(value, e_x - e_y + (fwd - bwd) / 0.4, atol=1e-4)


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
    flat = lambda x: tf.reduce_sum(0.0 * x, 1)  # noqa: E731
    x = sample_chain(sampler, flat, tf.zeros([256, 2]), [0, 1]).state.x
    assert float(tf.reduce_max(tf.abs(x))) <= 1.0


def test_drift_is_bounded_by_step_times_gradient_norm():
    # one noiseless-in-expectation check: with a k-Lipschitz energy one step moves
    # a point by at most eta*k plus the noise term
    k, eta = 5.0, 0.01
    energy = lambda x: k * tf.norm(x - 3.0, axis=1)  # noqa: E731  (k-Lipschitz)
    sampler = LangevinSampler(num_steps=1, step_size=eta, noise_scale=1e-6)
    x0 = tf.random.normal([512, 2])
    out = sample_chain(sampler, energy, x0, seed=[0, 0])
    x, results = out.state.x, out.results
    assert float(results.grad_norm_max) <= k * (1 + 1e-5)
    assert float(tf.reduce_max(tf.norm(x - x0, axis=1))) <= eta * k * (1 + 1e-3)


# ------------------------------------------------------------------ statistics
@pytest.mark.slow
def test_langevin_reproduces_gaussian_moments():
    # 4000 independent chains, 400 steps of size 0.01: the ULA bias on the
    # covariance is O(eta) ~ 1 %, the Monte Carlo error of the mean ~ 0.02.
    sampler = LangevinSampler(num_steps=400, step_size=0.01)
    x0 = tf.random.stateless_normal([4000, 2], [5, 5]) * 3.0
    x = compile_chain(sampler, gaussian_energy)(x0, tf.constant([1, 1], tf.int64))
    x = x.state.x
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
    out = compile_chain(mala, gaussian_energy)(x0, tf.constant([2, 2], tf.int64))
    x, results = out.state.x, out.results
    mean, cov = _moments(x)
    np.testing.assert_allclose(mean, MEAN, atol=0.06)
    np.testing.assert_allclose(cov, COV, atol=0.06)
    assert 0.2 < float(results.acceptance_rate) < 0.95
    ula = LangevinSampler(num_steps=300, step_size=0.1)
    y = compile_chain(ula, gaussian_energy)(x0, tf.constant([2, 2], tf.int64)).state.x
    _, cov_ula = _moments(y)
    # the unadjusted chain is measurably wrong at this step size: MALA is the fix
    assert np.abs(cov_ula - COV).max() > max(0.06, 1.5 * np.abs(cov - COV).max())


def test_temperature_schedule():
    sampler = LangevinSampler(num_steps=10, init_temperature=4.0, anneal_fraction=0.5)
    temps = [float(sampler.temperature(t)) for t in range(10)]
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
    x = compile_chain(sampler, gaussian_energy)(x0, tf.constant([3, 3], tf.int64))
    x = x.state.x
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

    mala = MALASampler(num_steps=300, step_size=0.1)
    ours = compile_chain(mala, gaussian_energy)(x0, tf.constant([4, 4], tf.int64))
    ours = ours.state.x
    for x in (reference(), ours):
        mean, cov = _moments(x)
        np.testing.assert_allclose(mean, MEAN, atol=0.08)
        np.testing.assert_allclose(cov, COV, atol=0.08)
