"""The learning schemes of EnergyModel: proposal negatives (importance-sampled
maximum likelihood), a learned k, adapted MALA chains, the weight average."""

import numpy as np
import pytest
from conftest import max_grad_norm, mixture_2d

import deel_ebm
from deel_ebm._backend import tf
from deel_ebm.core.proposals import MixtureProposal


def _default_model(**kw):
    net = deel_ebm.nets.lipschitz_mlp((2,), units=(32, 32))
    model = deel_ebm.EnergyModel(net, **kw)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3))
    return model


def test_defaults_pick_the_scheme_from_the_dimension():
    model = _default_model()
    assert model.uses_proposal and model.learn_k
    assert model.k_coef_lip == pytest.approx(20.0) and model.k_max == 80.0
    fixed = _default_model(k_coef_lip=40.0)
    assert not fixed.learn_k and fixed.k_coef_lip == 40.0
    assert isinstance(model.energy_loss, deel_ebm.core.losses.MaximumLikelihoodLoss)
    assert model.averaging.momentum == 0.995
    images = deel_ebm.EnergyModel(deel_ebm.nets.lipschitz_mlp((8, 8, 1), units=(8,)))
    assert not images.uses_proposal and images.k_coef_lip == 64.0
    assert float(images.sampler.step_size.numpy()) == pytest.approx(0.02 / 64)
    own = deel_ebm.EnergyModel(
        deel_ebm.nets.lipschitz_mlp((2,), units=(8,)), weight_average=None
    )
    own.compile(optimizer=tf.keras.optimizers.Adam(use_ema=True, ema_momentum=0.9))
    own.fit(mixture_2d(64)[0], epochs=1, verbose=0)
    assert own.averaging is None and own.optimizer.ema_momentum == 0.9


def test_proposal_path_fits_the_proposal_and_logs_the_ess():
    x, _ = mixture_2d(2048, seed=0)
    model = _default_model(num_negatives=512)
    assert not model.proposal.is_fitted
    before = model.buffer.storage.numpy().copy()
    hist = model.fit(x, epochs=2, verbose=0)  # default batch 1024: 2 steps/epoch
    assert model.proposal.is_fitted and int(model.optimizer.iterations) == 4
    assert 0.0 < hist.history["ess"][-1] <= 1.0
    assert "grad_norm" not in hist.history
    # no chain ran: the buffer is untouched
    np.testing.assert_array_equal(model.buffer.storage.numpy(), before)
    # a dataset input fits the proposal on its first samples
    other = _default_model(num_negatives=256)
    other.fit(tf.data.Dataset.from_tensor_slices(x).batch(512), epochs=1, verbose=0)
    assert other.proposal.is_fitted


def test_sample_starts_from_resampled_proposal_draws():
    """init=None resamples proposal draws by p/q: their law is the model's
    density, checked against the model's exact moments on a grid."""
    x, _ = mixture_2d(4096, seed=1, std=0.3)
    model = _default_model(num_negatives=1024, weight_average=None)
    model.fit(x, epochs=8, verbose=0)
    s = model.sample(4000, num_steps=0).numpy()
    # the model's density is the one on the proposal's box
    low, high = model.proposal.low.numpy(), model.proposal.high.numpy()
    g0 = np.linspace(low[0], high[0], 300, dtype=np.float32)
    g1 = np.linspace(low[1], high[1], 300, dtype=np.float32)
    grid = np.stack(np.meshgrid(g0, g1), -1).reshape(-1, 2)
    e = model.energy(grid).numpy()
    p = np.exp(-(e - e.min()))
    p /= p.sum()
    for f in (lambda z: z[:, 0], lambda z: z[:, 1], lambda z: np.sum(z**2, 1)):
        # 4 standard errors of the mean, plus 3 % for the O(1/M) bias of
        # resampling 8 draws per sample
        exact = float(np.sum(p * f(grid)))
        tol = 4 * np.std(f(s)) / np.sqrt(len(s)) + 0.03 * abs(exact)
        assert np.mean(f(s)) == pytest.approx(exact, abs=tol)


def test_proposal_round_trip_and_old_configs(tmp_path):
    x, _ = mixture_2d(1024, seed=2)
    model = _default_model(num_negatives=256)
    model.fit(x, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = tf.keras.models.load_model(tmp_path / "m.keras")
    assert loaded.proposal.is_fitted
    np.testing.assert_array_equal(
        loaded.proposal.means.numpy(), model.proposal.means.numpy()
    )
    np.testing.assert_allclose(loaded.energy(x[:64]), model.energy(x[:64]), atol=1e-5)
    loaded.fit(x, epochs=1, verbose=0)  # training goes on with the stored proposal
    # a config written before proposals existed builds a chain model
    config = model.get_config()
    for key in ("proposal", "num_negatives", "weight_average", "learn_k", "k_max"):
        config.pop(key)
    assert deel_ebm.EnergyModel.from_config(config).proposal is None


def test_bad_scheme_arguments():
    net = deel_ebm.nets.lipschitz_mlp((2,), units=(8,))
    with pytest.raises(ValueError, match="proposal must be"):
        deel_ebm.EnergyModel(net, proposal="gmm")
    with pytest.raises(TypeError, match="MixtureProposal"):
        deel_ebm.EnergyModel(net, proposal=object())
    with pytest.raises(ValueError, match="built for samples of shape"):
        q = MixtureProposal(n_components=2).fit(np.zeros((10, 3), np.float32) + 1)
        deel_ebm.EnergyModel(net, proposal=q)
    with pytest.raises(ValueError, match="num_negatives must be positive"):
        deel_ebm.EnergyModel(net, num_negatives=0)
    with pytest.raises(ValueError, match="k_max must be finite and above"):
        deel_ebm.EnergyModel(net, k_coef_lip=10.0, learn_k=True, k_max=5.0)
    with pytest.raises(ValueError, match="pass learn_k=True"):
        deel_ebm.EnergyModel(net, k_coef_lip=10.0, k_max=50.0)
    with pytest.raises(ValueError, match="weight_average must lie"):
        deel_ebm.EnergyModel(net, weight_average=1.0)


def test_learned_k_follows_the_likelihood_stays_capped_and_certified(tmp_path):
    x, _ = mixture_2d(2048, seed=3, std=0.15)
    model = _default_model(
        k_coef_lip=5.0, learn_k=True, k_max=12.0, weight_average=None
    )
    assert model.k_coef_lip == pytest.approx(5.0, rel=1e-5)
    assert any(v is model._k_logit for v in model.trainable_variables)
    model.fit(x, epochs=3, verbose=0)
    assert model.k_coef_lip != pytest.approx(5.0, abs=1e-4)  # it is trained
    # its gradient is the likelihood's: (mean f(x+) - sum_i w_i f(x-_i)) dk/ds
    x_neg = model.proposal.sample(4096, seed=[0, 9])
    log_q = model.proposal.log_prob(x_neg)
    with tf.GradientTape() as tape:
        e_pos, e_neg = model(x[:512], training=False), model(x_neg, training=False)
        loss = deel_ebm.core.losses.maximum_likelihood(e_pos, e_neg, log_q, 0.0)
    grad = float(tape.gradient(loss, model._k_logit))
    k = model.k_coef_lip
    w = deel_ebm.core.losses.negative_weights(e_neg, log_q)
    f_gap = float(tf.reduce_mean(e_pos) - tf.reduce_sum(w * e_neg)) / k
    assert grad == pytest.approx(f_gap * k * (1 - k / 12.0), rel=1e-3, abs=1e-6)
    # however far the parameter goes, k stays below its cap, and certified
    model._k_logit.assign(30.0)
    k = model.k_coef_lip
    assert k <= 12.0
    probe = np.random.default_rng(0).uniform(-4, 4, (20_000, 2)).astype(np.float32)
    probe = np.concatenate([probe, x])
    assert max_grad_norm(model.energy, probe) <= k * (1 + 1e-3)
    model.save(tmp_path / "k.keras")
    loaded = tf.keras.models.load_model(tmp_path / "k.keras")
    assert loaded.k_coef_lip == pytest.approx(k) and loaded.learn_k
    assert max_grad_norm(loaded.energy, probe) <= k * (1 + 1e-3)
    bound = deel_ebm.certificates.lipschitz_upper_bound(loaded.network)
    assert bound * loaded.k_coef_lip <= 12.0 * (1 + 1e-3)


def test_mala_adapts_its_step_toward_the_target_within_its_cap(data2d):
    sampler = deel_ebm.MALASampler(
        num_steps=5, step_size=1e-3, target_accept=0.5, adapt_rate=0.5
    )
    model = deel_ebm.EnergyModel(
        deel_ebm.nets.lipschitz_mlp((2,), units=(16, 16)),
        k_coef_lip=10.0,
        sampler=sampler,
        buffer=deel_ebm.ReplayBuffer(capacity=512, domain=(-3.0, 3.0)),
        proposal=None,
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    hist = model.fit(data2d, batch_size=128, epochs=3, verbose=0)
    assert "acceptance" in hist.history
    step = float(sampler.step_size.numpy())
    # acceptance is near 1 at this small step: it grows, up to 4x the start
    assert step == pytest.approx(4e-3, rel=1e-5)
    clone = deel_ebm.MALASampler.from_config(sampler.get_config())
    assert clone.target_accept == 0.5 and clone.max_step_size == pytest.approx(4e-3)
    fixed = deel_ebm.MALASampler(num_steps=5, step_size=1e-3)
    fixed.adapt(None)  # no target: nothing to do
    assert float(fixed.step_size.numpy()) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="target_accept must lie"):
        deel_ebm.MALASampler(target_accept=1.0)
    with pytest.raises(ValueError, match="min_step_size"):
        deel_ebm.MALASampler(step_size=1e-3, min_step_size=1.0)


def test_weight_average_is_used_after_fit_and_trained_past():
    x, _ = mixture_2d(2048, seed=4)

    def model():
        tf.keras.utils.set_random_seed(0)
        return _default_model(num_negatives=256, weight_average=0.9)

    one = model()
    one.fit(x, epochs=4, verbose=0, shuffle=False)
    avg = one.averaging
    # the weights hold the average; the last iterate is kept, and differs
    for w, a in zip(one.trainable_variables, avg.averages):
        np.testing.assert_array_equal(w.numpy(), a.numpy())
    assert any(
        not np.array_equal(a.numpy(), it.numpy())
        for a, it in zip(avg.averages, avg.iterates)
    )
    # four one-epoch fits train exactly as one four-epoch fit
    loop = model()
    for _ in range(4):
        loop.fit(x, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(one.variables, loop.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    # energy() uses the averaged weights (the cached kernels follow)
    used = one.energy(x[:64]).numpy()
    recomputed = one(x[:64], training=True).numpy()
    np.testing.assert_allclose(used, recomputed, rtol=1e-5, atol=1e-5)
    # the warm-up: after one step the average is the weights of that step
    first = model()
    first.fit(x[:1024], epochs=1, verbose=0)
    for a, it in zip(first.averaging.averages, first.averaging.iterates):
        np.testing.assert_array_equal(a.numpy(), it.numpy())


@pytest.mark.parametrize("negatives", ["proposal", "walkers", "chains", "base-starts"])
def test_train_step_compiles_with_xla(negatives):
    """compile(jit_compile=True) with every negative scheme: the default proposal
    (its mixture components are drawn in the step), resampled walkers, replay-buffer
    chains, and chains started from the fitted base (drawn in the step, in 9
    dimensions)."""
    x, _ = mixture_2d(1024, seed=0)
    kw = {"weight_average": None}
    short = deel_ebm.LangevinSampler(num_steps=10, step_size=5e-3)
    if negatives == "walkers":
        kw.update(walkers=deel_ebm.core.JarzynskiWalkers(128, resample_ess=1.0))
    elif negatives == "chains":
        kw.update(proposal=None, sampler=short)
    elif negatives == "base-starts":
        rng = np.random.default_rng(0)
        x = np.concatenate([x, rng.normal(0.0, 0.3, (len(x), 7))], 1)
        x = x.astype(np.float32)
        kw.update(base_starts=1.0, sampler=short)
    net = deel_ebm.nets.lipschitz_mlp(x.shape[1:], units=(32, 32))
    model = deel_ebm.EnergyModel(net, **kw)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), jit_compile=True)
    history = model.fit(x, batch_size=256, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    if negatives in ("proposal", "walkers"):
        assert 0.0 < history.history["ess"][-1] <= 1.0
    if negatives == "walkers":
        assert int(model.walkers.resamples) > 0  # the compiled picks were used
    if negatives == "base-starts":
        assert model.base is not None and model.base_starts == 1.0
    k = float(model.k_coef_lip)
    assert max_grad_norm(model, x[:256]) <= k * (1 + 1e-3)
