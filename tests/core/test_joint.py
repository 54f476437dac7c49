"""JointEnergyModel: a deel-lip classifier as an energy model of (x, y)."""

import math
import warnings

import numpy as np
import pytest

import deel_ebm
from deel_ebm import keras
from deel_ebm._backend import tf
from deel_ebm.core.joint import as_labels

CENTRES = np.array([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5]], np.float32)


def three_blobs(n, seed=0, std=0.25):
    """Three Gaussian classes in 2D, their labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = CENTRES[y] + std * rng.standard_normal((n, 2)).astype(np.float32)
    return x.astype(np.float32), y


def joint_model(k=10.0, steps=20, seed=0, **kwargs):
    tf.keras.utils.set_random_seed(seed)  # deel-lip's power-iteration vectors
    net = deel_ebm.nets.lipschitz_classifier((2,), 3, units=(32, 32), seed=seed)
    kwargs.setdefault("proposal", None)
    kwargs.setdefault("weight_average", None)
    model = deel_ebm.JointEnergyModel(
        net,
        k_coef_lip=k,
        sampler=deel_ebm.LangevinSampler(num_steps=steps, step_size=0.2 / k),
        buffer=deel_ebm.ReplayBuffer(capacity=1000, domain=(-3.0, 3.0)),
        seed=seed,
        **kwargs,
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


@pytest.fixture(scope="module")
def trained():
    x, y = three_blobs(1536)
    model = joint_model()
    model.fit(x, y, batch_size=256, epochs=60, verbose=0)
    return model


# ----------------------------------------------------------------- labels
def test_labels_accept_integers_and_one_hot_rows():
    assert as_labels([2, 0, 1], 3).tolist() == [2, 0, 1]
    assert as_labels(np.eye(3)[[1, 2]], 3).tolist() == [1, 2]
    assert as_labels(np.array([[1], [0]]), 3).tolist() == [1, 0]
    assert as_labels(np.array([1.0, 2.0]), 3).dtype == np.int32


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0, 3], r"labels must lie in \[0, 2\]"),
        ([-1, 0], r"labels must lie in \[0, 2\]"),
        ([0.5, 1.0], "integer class labels"),
        ([[0.5, 0.5, 0.0]], "must be one-hot"),
        ([[1.0, 1.0, 0.0]], "must be one-hot"),
        (np.zeros((2, 2, 2)), "integer labels"),
        ([True, False], "integer class labels"),
        (None, "needs class labels"),
    ],
)
def test_bad_labels_get_one_clear_line(labels, message):
    with pytest.raises(ValueError, match=message):
        as_labels(labels, 3)


def test_fit_without_or_with_wrong_labels_is_refused():
    model = joint_model()
    x, y = three_blobs(64)
    with pytest.raises(ValueError, match="needs class labels"):
        model.fit(x, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="has 10 labels for 64 samples"):
        model.fit(x, y[:10], epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data of a JointEnergyModel"):
        model.fit(x, y, epochs=1, verbose=0, validation_data=x)


def test_one_hot_and_integer_labels_train_the_same_model():
    x, y = three_blobs(256)
    a, b = joint_model(), joint_model()
    a.fit(x, y, batch_size=128, epochs=2, verbose=0)
    b.fit(x, np.eye(3, dtype=np.float32)[y], batch_size=128, epochs=2, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_a_scalar_network_or_a_bad_weight_is_refused():
    scalar = deel_ebm.nets.lipschitz_mlp((2,), units=(8, 8))
    with pytest.raises(ValueError, match="C >= 2 logits"):
        deel_ebm.JointEnergyModel(scalar)
    net = deel_ebm.nets.lipschitz_classifier((2,), 3, units=(8, 8))
    with pytest.raises(ValueError, match="generative_weight must be finite and >= 0"):
        deel_ebm.JointEnergyModel(net, generative_weight=-1.0)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        deel_ebm.nets.lipschitz_classifier((2,), 1)


# ---------------------------------------------------------------- outputs
def test_energy_probabilities_and_logits_agree():
    model = joint_model()
    x, _ = three_blobs(50, seed=3)
    logits = model.logits(x).numpy()
    assert logits.shape == (50, 3)
    np.testing.assert_allclose(
        model.energy(x).numpy(),
        -np.log(np.exp(logits.astype(np.float64)).sum(1)),
        rtol=1e-5,
        atol=1e-5,
    )
    proba = model.predict(x, verbose=0)
    assert proba.shape == (50, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, model.predict_proba(x), atol=1e-6)
    y = np.array([0, 1, 2] * 16 + [0, 1])
    np.testing.assert_allclose(
        model.conditional_energy(x, y).numpy(), -logits[np.arange(50), y], rtol=1e-6
    )


def _max_grad_norm(model, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        e = model.energy(x)
    return float(tf.reduce_max(tf.norm(tape.gradient(e, x), axis=1)))


def test_the_marginal_energy_is_k_lipschitz_trained_and_reloaded(trained, tmp_path):
    rng = np.random.default_rng(5)
    probes = rng.uniform(-3, 3, (4096, 2)).astype(np.float32)
    k = trained.k_coef_lip
    grad = _max_grad_norm(trained, probes)
    assert 0.3 * k < grad <= k * (1 + 1e-3)
    # the certified bound through the library's certificate too
    bound = deel_ebm.certificates.lipschitz_upper_bound(trained.network)
    assert bound <= 1 + 1e-3
    path = tmp_path / "joint.keras"
    trained.save(path)
    loaded = keras.models.load_model(path)  # no custom objects
    assert isinstance(loaded, deel_ebm.JointEnergyModel)
    assert _max_grad_norm(loaded, probes) <= loaded.k_coef_lip * (1 + 1e-3)


def test_save_and_load_round_trip(trained, tmp_path):
    path = tmp_path / "joint.keras"
    trained.save(path)
    loaded = deel_ebm.export.load_model(path)
    x, _ = three_blobs(64, seed=9)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), trained.predict(x, verbose=0)
    )
    assert loaded.generative_weight == trained.generative_weight
    assert loaded.num_classes == 3
    a = trained.sample(16, y=1, seed=4, num_steps=5).numpy()
    b = loaded.sample(16, y=1, seed=4, num_steps=5).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)


# --------------------------------------------------------------- learning
@pytest.mark.slow
def test_it_classifies_and_learns_where_the_data_are(trained):
    x, y = three_blobs(600, seed=1)
    accuracy = float(np.mean(trained.predict(x, verbose=0).argmax(1) == y))
    assert accuracy >= 0.97
    far = np.random.default_rng(2).uniform(-3, 3, (600, 2)).astype(np.float32)
    far = far[np.min(np.linalg.norm(far[:, None] - CENTRES, axis=2), axis=1) > 1.2]
    auroc = deel_ebm.metrics.auroc(trained.energy(x).numpy(), trained.energy(far))
    assert auroc >= 0.95


@pytest.fixture(scope="module")
def trained_ce():
    x, y = three_blobs(1536)
    model = joint_model(classifier_loss="ce")
    model.fit(x, y, batch_size=256, epochs=60, verbose=0)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("term, spread", [("ce", 0.6), ("hkr", 1.0)])
def test_class_conditional_samples_land_in_their_class(
    term, spread, trained, trained_ce
):
    """Chains on E(x, y) end in class y, near it: the cross-entropy's within
    0.6 of the centre (the class has std 0.25); HKR's conditional energy keeps
    rising away from the other classes (a margin, not a density), so its
    samples spread wider (median 0.64 measured), still well inside the class
    (the nearest other centre is 2.1 away)."""
    model = trained_ce if term == "ce" else trained
    assert deel_ebm.core.classifier_losses.name_of(model.classifier_loss) == term
    for c in range(3):
        x = model.sample(300, y=c, num_steps=300, init="prior", seed=c).numpy()
        nearest = np.argmin(np.linalg.norm(x[:, None] - CENTRES, axis=2), axis=1)
        assert np.mean(nearest == c) >= 0.9, c
        # and near the class, not merely on its side
        assert np.median(np.linalg.norm(x - CENTRES[c], axis=1)) < spread
    trained = model
    mixed = trained.sample(6, y=[0, 1, 2, 0, 1, 2], num_steps=300, seed=7).numpy()
    nearest = np.argmin(np.linalg.norm(mixed[:, None] - CENTRES, axis=2), axis=1)
    assert np.mean(nearest == [0, 1, 2, 0, 1, 2]) >= 5 / 6


def test_sample_labels_are_checked():
    model = joint_model()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        model.sample(4, y=3)
    with pytest.raises(ValueError, match="has 2 labels for 4 samples"):
        model.sample(4, y=[0, 1])


# ---------------------------------------------------------- certification
def test_margin_factor_follows_the_last_layer():
    net = deel_ebm.nets.lipschitz_classifier((2,), 3, units=(8, 8))
    assert deel_ebm.nets.logit_margin_factor(net) == pytest.approx(math.sqrt(2))
    from deel.lip.layers import FrobeniusDense, SpectralDense

    disjoint = keras.Sequential(
        [keras.Input((2,)), SpectralDense(8), FrobeniusDense(3, disjoint_neurons=True)]
    )
    assert deel_ebm.nets.logit_margin_factor(disjoint) == 2.0
    whole = keras.Sequential(
        [keras.Input((2,)), SpectralDense(8), FrobeniusDense(3, disjoint_neurons=False)]
    )
    assert deel_ebm.nets.logit_margin_factor(whole) == pytest.approx(math.sqrt(2))


def _pgd_flip(model, x, radius, steps=50):
    """ℓ2 PGD on the margin of the predicted class, within ``radius`` per point:
    whether the attack changed each prediction."""
    x = tf.constant(x)
    pred = tf.argmax(model.logits(x), axis=1)
    r = tf.constant(radius[:, None], tf.float32)
    delta = tf.zeros_like(x)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            logits = model.logits(x + delta)
            own = tf.gather(logits, pred, axis=1, batch_dims=1)
            other = tf.reduce_max(logits - 1e9 * tf.one_hot(pred, 3), axis=1)
            margin = own - other
        g = tape.gradient(margin, delta)
        g = g / (tf.norm(g, axis=1, keepdims=True) + 1e-12)
        delta = delta - 0.1 * r * g
        norm = tf.norm(delta, axis=1, keepdims=True)
        delta = delta * tf.minimum(1.0, r / (norm + 1e-12))
    return (tf.argmax(model.logits(x + delta), axis=1) != pred).numpy()


def test_no_attack_flips_a_certified_prediction(trained):
    x, _ = three_blobs(400, seed=11)
    radius = trained.certified_radius(x)
    assert np.all(radius >= 0) and np.median(radius) > 0.05
    # inside 99 % of the certified radius nothing flips ...
    assert not np.any(_pgd_flip(trained, x, 0.99 * radius))
    # ... while the same attack does flip points at 3x their radius: it is not weak
    near = radius < 0.3
    assert np.mean(_pgd_flip(trained, x[near], 3.0 * radius[near])) > 0.5


def test_certified_robust_accuracy_counts_correct_and_wide_margins():
    logits = np.array([[3.0, 0.0], [0.0, 1.0], [2.0, 1.9]])
    labels = np.array([0, 0, 0])
    result = deel_ebm.certificates.certified_robust_accuracy(
        logits, labels, k_coef_lip=1.0, radii=(0.05, 1.0, 3.0)
    )
    # radii 3/√2 = 2.12, (wrong), 0.1/√2 = 0.07
    assert result == {0.0: 2 / 3, 0.05: 2 / 3, 1.0: 1 / 3, 3.0: 0.0}
    np.testing.assert_allclose(
        deel_ebm.certificates.certified_margin_radius(logits, 2.0, 2.0),
        [0.75, 0.25, 0.025],
    )
    with pytest.raises(ValueError, match="logits must have shape"):
        deel_ebm.certificates.certified_margin_radius(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="radii must be finite and >= 0"):
        deel_ebm.certificates.certified_robust_accuracy(logits, labels, 1.0, [-1])


def test_model_radius_matches_the_certificate_function(trained):
    x, _ = three_blobs(100, seed=12)
    np.testing.assert_allclose(
        trained.certified_radius(x),
        deel_ebm.certificates.certified_margin_radius(
            trained.logits(x).numpy(), trained.k_coef_lip, trained.margin_factor
        ),
        rtol=1e-6,
    )


# ---------------------------------------------------------------- exports
@pytest.mark.parametrize("output", ["energy", "logits", "probabilities"])
def test_plain_export_of_each_output(trained, tmp_path, output):
    plain = deel_ebm.export.export_vanilla(trained, output=output)
    path = tmp_path / f"{output}.keras"
    plain.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x, _ = three_blobs(32, seed=13)
    expected = {
        "energy": trained.energy(x).numpy(),
        "logits": trained.logits(x).numpy(),
        "probabilities": trained.predict_proba(x),
    }[output]
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_plain_export_of_an_energy_model_has_no_logits():
    net = deel_ebm.nets.lipschitz_mlp((2,), units=(8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = deel_ebm.EnergyModel(net, k_coef_lip=5.0)
    with pytest.raises(ValueError, match="output must be one of"):
        deel_ebm.export.export_vanilla(model, output="logits")


def test_served_export_gives_the_marginal_energy(trained, tmp_path):
    path = deel_ebm.export.export_saved_model(trained, tmp_path / "served")
    served = tf.saved_model.load(str(path))
    x, _ = three_blobs(16, seed=14)
    np.testing.assert_allclose(
        served.energy(tf.constant(x)).numpy(), trained.energy(x).numpy(), rtol=1e-5
    )


# --------------------------------------------------------------- callbacks
def test_callbacks_and_validation_metrics_work_on_a_joint_model():
    x, y = three_blobs(512)
    model = joint_model()
    probes = np.random.default_rng(0).uniform(-3, 3, (256, 2)).astype(np.float32)
    history = model.fit(
        x,
        y,
        batch_size=128,
        epochs=2,
        verbose=0,
        validation_data=(x[:128], y[:128]),
        callbacks=[
            deel_ebm.callbacks.LipschitzCertificate(probe_points=probes),
            deel_ebm.callbacks.EnergyGapMonitor(),
        ],
    )
    for key in ("ce", "accuracy", "val_ce", "val_accuracy", "energy_gap"):
        assert key in history.history, key
        assert np.all(np.isfinite(history.history[key]))


@pytest.mark.slow
def test_conditional_starts_are_resampled_toward_the_class():
    """With a fitted proposal, sample(y=c) starts from its draws resampled by
    exp(k f_c) / q: in class c before any chain step."""
    x, y = three_blobs(1536, seed=4)
    tf.keras.utils.set_random_seed(0)
    net = deel_ebm.nets.lipschitz_classifier((2,), 3, units=(32, 32))
    model = deel_ebm.JointEnergyModel(net, k_coef_lip=10.0, weight_average=None)
    assert model.proposal is not None  # 2D: importance-sampled negatives
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(x, y, batch_size=512, epochs=20, verbose=0)
    labels = np.repeat([0, 1, 2], 200)
    starts = model.sample(600, y=labels, num_steps=0, seed=3).numpy()
    nearest = np.argmin(np.linalg.norm(starts[:, None] - CENTRES, axis=2), axis=1)
    assert np.mean(nearest == labels) >= 0.9
    plain = model.sample(600, num_steps=0, seed=3).numpy()  # no class asked
    nearest = np.argmin(np.linalg.norm(plain[:, None] - CENTRES, axis=2), axis=1)
    assert np.mean(nearest == labels) < 0.5
    # and the same seed gives the same starts
    again = model.sample(600, y=labels, num_steps=0, seed=3).numpy()
    np.testing.assert_array_equal(starts, again)


def test_certified_accuracy_callback_logs_each_radius(trained):
    x, y = three_blobs(300, seed=15)
    callback = deel_ebm.callbacks.CertifiedAccuracy(x, y, radii=(0.1, 0.5))
    history = trained.fit(
        x, y, batch_size=150, epochs=1, verbose=0, callbacks=[callback]
    )
    expected = deel_ebm.certificates.certified_robust_accuracy(
        trained.logits(x).numpy(), y, trained.k_coef_lip, (0.1, 0.5)
    )
    assert history.history["val_certified_accuracy_0.1"] == [expected[0.1]]
    assert history.history["val_certified_accuracy_0.5"] == [expected[0.5]]
    assert history.history["val_accuracy"] == [expected[0.0]]
    assert expected[0.1] >= expected[0.5] and expected[0.5] > 0
    with pytest.raises(ValueError, match="same positive number of samples"):
        deel_ebm.callbacks.CertifiedAccuracy(x, y[:3])


# ------------------------------------------------- the classification term
def test_the_default_term_and_its_choice_on_the_model():
    model = joint_model(steps=2)
    expected = type(
        deel_ebm.core.classifier_losses.get(deel_ebm.core.joint.DEFAULT_CLASSIFIER_LOSS)
    )
    assert isinstance(model.classifier_loss, expected)
    hkr = joint_model(steps=2, classifier_loss="hkr")
    assert isinstance(
        hkr.classifier_loss, deel_ebm.core.classifier_losses.MulticlassHKRLoss
    )


def test_hkr_joint_model_trains_stays_certified_and_reloads(tmp_path):
    x, y = three_blobs(768)
    loss = deel_ebm.core.classifier_losses.MulticlassHKRLoss(alpha=20.0, min_margin=0.4)
    model = joint_model(steps=5, classifier_loss=loss)
    history = model.fit(x, y, batch_size=256, epochs=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert {"ce", "accuracy"} <= set(history.history)
    x_test, y_test = three_blobs(300, seed=3)
    assert np.mean(model.predict(x_test, verbose=0).argmax(1) == y_test) >= 0.9
    bound = deel_ebm.certificates.lipschitz_upper_bound(model.network)
    assert bound <= 1 + 1e-3
    path = tmp_path / "hkr.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom objects
    assert isinstance(
        loaded.classifier_loss, deel_ebm.core.classifier_losses.MulticlassHKRLoss
    )
    assert float(loaded.classifier_loss.alpha.numpy()) == 20.0
    np.testing.assert_allclose(float(loaded.classifier_loss.min_margin.numpy()), 0.4)
    np.testing.assert_array_equal(
        loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0)
    )


def test_a_config_saved_before_the_choice_loads_with_cross_entropy():
    model = joint_model(steps=2, classifier_loss="hkr")
    config = model.get_config()
    config.pop("classifier_loss")
    rebuilt = deel_ebm.JointEnergyModel.from_config(config)
    assert isinstance(
        rebuilt.classifier_loss, deel_ebm.core.classifier_losses.CrossEntropyLoss
    )
