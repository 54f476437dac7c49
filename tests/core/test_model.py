"""EnergyModel: construction, training contract, bad input, Lipschitz guarantee."""

import warnings

import numpy as np
import pytest
from conftest import max_grad_norm, mixture_2d, small_model

import deel_ebm
from deel_ebm._backend import tf


# ------------------------------------------------------------ construction
def test_energy_is_k_times_network():
    model = small_model(k=7.0)
    x = tf.random.normal([5, 2])
    f = tf.reshape(model.network(x, training=False), [-1])
    np.testing.assert_allclose(model.energy(x), 7.0 * f, rtol=1e-6)
    assert model.energy(x).shape == (5,)


def test_network_must_give_one_scalar_per_sample():
    net = tf.keras.Sequential([tf.keras.layers.Input((2,)), tf.keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="one scalar per sample"):
        deel_ebm.EnergyModel(net)


@pytest.mark.parametrize("k", [0.0, -1.0, float("inf")])
def test_bad_k_raises(k):
    with pytest.raises(ValueError, match="k_coef_lip"):
        deel_ebm.EnergyModel(deel_ebm.nets.lipschitz_mlp((2,), units=(8,)), k)


def test_unbuilt_network_needs_input_shape():
    net = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="input_shape"):
        deel_ebm.EnergyModel(net)
    with pytest.warns(UserWarning, match="not deel-lip"):
        model = deel_ebm.EnergyModel(net, input_shape=(3,))
    assert model.sample_shape == (3,)


def test_unconstrained_layers_are_reported():
    with pytest.warns(UserWarning, match="not deel-lip Lipschitz layers"):
        model = deel_ebm.EnergyModel(deel_ebm.nets.unconstrained_mlp((2,), (8,)))
    assert not model.is_lipschitz and model.unconstrained_layers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lip = deel_ebm.EnergyModel(deel_ebm.nets.lipschitz_mlp((2,), (8,)))
    # (TF 2.15 emits an unrelated DeprecationWarning here: only ours must be absent)
    assert not [w for w in caught if "Lipschitz" in str(w.message)]
    assert lip.is_lipschitz and lip.unconstrained_layers == []


# ------------------------------------------------------------ training
def test_fit_numpy_with_validation_reports_metrics(data2d):
    model = small_model()
    hist = model.fit(
        data2d, batch_size=128, epochs=2, validation_data=data2d[:256], verbose=0
    )
    for key in ("loss", "energy_gap", "e_pos", "e_neg", "grad_norm"):
        assert len(hist.history[key]) == 2 and np.isfinite(hist.history[key]).all()
        assert np.isfinite(hist.history["val_" + key]).all()
    gap = np.array(hist.history["e_neg"]) - np.array(hist.history["e_pos"])
    np.testing.assert_allclose(hist.history["energy_gap"], gap, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("run_eagerly", [True, False])
def test_fit_dataset_with_labels_and_callbacks(data2d, run_eagerly):
    model = small_model()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), run_eagerly=run_eagerly)
    labels = np.zeros(len(data2d), "int32")
    ds = tf.data.Dataset.from_tensor_slices((data2d, labels)).batch(64)
    seen = []
    cb = tf.keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: seen.append(logs)
    )
    model.fit(ds, epochs=1, callbacks=[cb], verbose=0)
    assert seen and "energy_gap" in seen[0]
    assert int(model.optimizer.iterations) == 8


def test_training_changes_buffer_and_weights(data2d):
    model = small_model()
    before = model.buffer.storage.numpy().copy()
    w0 = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(data2d, batch_size=128, epochs=1, verbose=0)
    changed = np.any(model.buffer.storage.numpy() != before, axis=1).sum()
    assert changed >= 128  # at least one batch of chains written back
    assert any(np.any(w != w0_) for w, w0_ in zip(model.trainable_weights, w0))


def test_weight_average_is_swapped_in_and_used_by_every_path(data2d):
    # Adam(use_ema=True) swaps the moving average into the weights when fit ends;
    # the cached constrained kernels must follow, or energy() and sample() would
    # still use the last iterate
    model = small_model()
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9)
    )
    model.fit(data2d, batch_size=128, epochs=2, verbose=0)
    averages = model.optimizer._model_variables_moving_average
    for w, avg in zip(model.trainable_variables, averages):
        np.testing.assert_array_equal(w.numpy(), avg.numpy())
    x = tf.constant(data2d[:64])
    used = model.energy(x).numpy()
    recomputed = model(x, training=True).numpy()  # recomputes wbar from the weights
    np.testing.assert_allclose(used, recomputed, rtol=1e-5, atol=1e-5)


def test_no_retracing_during_fit(data2d):
    model = small_model()
    counts = []
    record = tf.keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: counts.append(
            model.train_function.experimental_get_tracing_count()
        )
    )
    model.fit(data2d, batch_size=128, epochs=3, verbose=0, callbacks=[record])
    model.fit(data2d, batch_size=128, epochs=1, verbose=0, callbacks=[record])
    assert counts == [1, 1, 1, 1]
    chain = model._chain(model.sampler)
    assert chain.experimental_get_tracing_count() == 1


def test_seeded_runs_are_reproducible(data2d):
    results = []
    for _ in range(2):
        tf.keras.utils.set_random_seed(1)
        model = small_model(seed=3)
        model.fit(data2d, batch_size=128, epochs=1, verbose=0, shuffle=False)
        results.append(
            (model.buffer.storage.numpy(), [w.numpy() for w in model.weights])
        )
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "x, error, match",
    [
        (np.zeros((64, 3), "float32"), ValueError, "shape"),
        (np.zeros((64,), "float32"), ValueError, "shape"),
        (np.full((64, 2), np.nan, "float32"), ValueError, "NaN"),
        (np.zeros((64, 2), "int64"), TypeError, "floating"),
    ],
)
def test_bad_training_data_is_refused_before_training(x, error, match):
    model = small_model()
    w0 = [w.numpy().copy() for w in model.weights]
    with pytest.raises(error, match=match):
        model.fit(x, batch_size=32, epochs=1, verbose=0)
    for w, w0_ in zip(model.weights, w0):
        np.testing.assert_array_equal(w, w0_)


def test_nan_in_a_dataset_is_caught_before_any_update():
    model = small_model()
    x = np.zeros((64, 2), "float32")
    x[3] = np.inf
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        model.fit(tf.data.Dataset.from_tensor_slices(x).batch(64), verbose=0)
    assert int(model.optimizer.iterations) == 0


def test_batch_larger_than_capacity_is_refused(data2d):
    model = small_model(capacity=100)
    with pytest.raises(ValueError, match="capacity"):
        model.fit(data2d, batch_size=128, verbose=0)


def test_divergence_stops_training_and_keeps_last_good_state(data2d):
    model = small_model()
    model.fit(data2d, batch_size=128, epochs=1, verbose=0)
    good_w = [w.numpy().copy() for w in model.trainable_weights]
    good_buffer = model.buffer.storage.numpy().copy()
    good_iters = int(model.optimizer.iterations)
    model.sampler.step_size.assign(np.inf)  # chains blow up at the next step
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        hist = model.fit(data2d, batch_size=128, epochs=3, verbose=0)
    assert "non-finite" in model.stop_reason
    assert len(hist.history["loss"]) == 1  # stopped during the first epoch
    for w, g in zip(model.trainable_weights, good_w):
        np.testing.assert_array_equal(w, g)
    np.testing.assert_array_equal(model.buffer.storage.numpy(), good_buffer)
    assert int(model.optimizer.iterations) == good_iters


# ------------------------------------------------------------ sampling
def test_sample_shapes_and_options():
    model = small_model()
    assert model.sample(50).shape == (50, 2)
    x, traj = model.sample(20, num_steps=4, return_trajectory=True)
    assert traj.shape == (5, 20, 2)
    np.testing.assert_array_equal(traj[-1], x)
    init = np.zeros((20, 2), "float32")
    assert model.sample(20, num_steps=0, init=init).numpy().tolist() == init.tolist()
    assert model.sample(30, init="buffer").shape == (30, 2)
    mala = deel_ebm.MALASampler(num_steps=3, step_size=1e-2)
    assert model.sample(10, sampler=mala).shape == (10, 2)
    np.testing.assert_array_equal(model.sample(8, seed=4), model.sample(8, seed=4))
    with pytest.raises(ValueError, match="n must be"):
        model.sample(0)
    with pytest.raises(ValueError, match="init has"):
        model.sample(5, init=init)


# ------------------------------------------------------------ Lipschitz guarantee
@pytest.mark.slow
def test_trained_energy_is_k_lipschitz_through_every_public_path(tmp_path):
    k = 10.0
    x, _ = mixture_2d(2048, seed=1)
    model = small_model(k=k, steps=20)
    model.fit(x, batch_size=256, epochs=3, verbose=0)
    probe = np.random.default_rng(2).uniform(-4, 4, (20_000, 2)).astype("float32")
    probe = np.concatenate([probe, x, model.buffer.storage.numpy()])
    bound = k * (1 + 1e-3)
    g_energy = max_grad_norm(model.energy, probe)
    assert g_energy <= bound
    assert g_energy > 0.2 * k  # not a flat energy: the test can fail (about 0.3 k)
    # the gradients the chains use
    results = deel_ebm.sample_chain(model.sampler, model, probe[:4096], [0, 1]).results
    assert float(results.grad_norm_max) <= bound
    # a saved-then-loaded model
    model.save(tmp_path / "m.keras")
    loaded = tf.keras.models.load_model(tmp_path / "m.keras")
    assert max_grad_norm(loaded.energy, probe) <= bound
    np.testing.assert_allclose(loaded.energy(probe), model.energy(probe), atol=1e-5)


@pytest.mark.slow
def test_short_fit_learns_a_positive_gap_and_covers_every_mode():
    x, centres = mixture_2d(4096, seed=0, radius=2.0, std=0.25)
    net = deel_ebm.nets.lipschitz_mlp((2,), units=(64, 64))
    model = deel_ebm.EnergyModel(
        net,
        k_coef_lip=10.0,
        sampler=deel_ebm.LangevinSampler(num_steps=30, step_size=1e-2),
        buffer=deel_ebm.ReplayBuffer(capacity=4096, domain=(-3.5, 3.5)),
        loss="cd",
        proposal=None,
        seed=0,
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(2e-3, beta_1=0.0))
    hist = model.fit(x, batch_size=256, epochs=8, verbose=0)
    assert hist.history["energy_gap"][-1] > 0
    s = model.sample(2000, num_steps=200).numpy()
    dist = np.linalg.norm(s[:, None, :] - centres[None], axis=2)
    near = dist.min(axis=1) < 3 * 0.25
    counts = np.bincount(dist.argmin(axis=1)[near], minlength=len(centres))
    assert near.mean() > 0.5, near.mean()
    assert (counts > 0.05 * len(s)).all(), counts
