"""deel_ebm.callbacks: logs, collapse/blow-up rules, certificates, snapshots, guard."""

import csv
import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import mixture_2d, small_model
from deel.lip.callbacks import CondenseCallback, MonitorCallback

import deel_ebm
from deel_ebm import nets
from deel_ebm._backend import keras, tf
from deel_ebm.callbacks import (
    GAP_BLOWUP,
    GAP_COLLAPSE,
    GAP_OK,
    DivergenceGuard,
    EnergyGapMonitor,
    LipschitzCertificate,
    LipschitzViolationError,
    NetworkCallback,
    SampleSnapshot,
    lipschitz_report,
)

K = 10.0  # small_model's k_coef_lip
TOL = 1e-3  # LipschitzCertificate's default tolerance on k
BATCH = 128  # 512 points: 4 steps per epoch
LOG_KEYS = ("energy_gap", "e_pos", "e_neg", "gap_status")
CERT_KEYS = ("lip_upper", "lip_lower", "k_coef_lip", "lip_violation")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ helpers
def _fast(model):
    """Interpreted chains: a test fit compiles in ~1 s instead of ~5 s with XLA."""
    model.sampler.jit_compile = False
    return model


def _data(n=512):
    return mixture_2d(n)[0]


def _fit(model, callbacks, epochs=1, x=None, **kw):
    x = _data() if x is None else x
    return model.fit(
        x, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks, **kw
    )


def _tags(log_dir):
    """{tag: [steps]} of every TensorBoard event file under log_dir."""
    tags = {}
    for path in Path(log_dir).rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def _state(model):
    """Copies of what the guard must restore: network, buffer, optimizer."""
    variables = model.network.weights + [model.buffer.storage]
    variables += list(model.optimizer.variables)
    return [v.numpy().copy() for v in variables]


def _assert_same_state(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


class _PoisonKernel(keras.callbacks.Callback):
    """Sets the first kernel to NaN before the train steps from ``start`` on.

    The step then runs the real divergence path: NaN energies and gradients, the
    step is skipped by ``train_step`` but the constrained layers' cached ``wbar``
    and power-iteration vectors are overwritten with NaN. ``before`` keeps the
    state just before the first poisoning.
    """

    def __init__(self, start, every=False):
        super().__init__()
        self.start, self.every = start, every
        self.before = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        at = (self.epoch, batch)
        if at == self.start or (self.every and at > self.start):
            if self.before is None:
                self.before = _state(self.model)
            kernel = self.model.network.layers[0].kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


class _StateAfter(keras.callbacks.Callback):
    """Records the state at the end of the given (epoch, batch)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.state = at, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.state = _state(self.model)


def _messages(record, text):
    """Number of recorded warnings whose message contains ``text``."""
    return sum(text in str(w.message) for w in record)


def _gap_logs(gap, e_pos=0.0):
    return {"energy_gap": gap, "e_pos": e_pos, "e_neg": e_pos + gap}


def _drive_epochs(monitor, epoch_logs):
    """Run the monitor's epoch hooks on synthetic logs; the gap_status of each."""
    model = SimpleNamespace(stop_training=False, stop_reason=None)
    monitor.set_model(model)
    monitor.on_train_begin()
    statuses = []
    for epoch, logs in enumerate(epoch_logs):
        logs = dict(logs)
        monitor.on_epoch_begin(epoch)
        monitor.on_epoch_end(epoch, logs)
        statuses.append(logs["gap_status"])
        if model.stop_training:
            break
    return statuses, model


# ------------------------------------------------------------------ shared runs
@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """A deel-lip MLP trained 2 epochs with the monitor, certificate and loggers."""
    tf.keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("mlp_run")
    x = _data()
    model = _fast(small_model())
    monitor = EnergyGapMonitor(per_batch=True)
    cert = LipschitzCertificate(every_n_batches=2, probe_points=x[:64], ascent_steps=3)
    snap = SampleSnapshot(
        every_n_epochs=2,
        folder=root / "png",
        log_dir=root / "tb",
        num_samples=64,
        num_steps=3,
    )
    csv_path = root / "log.csv"
    loggers = [keras.callbacks.CSVLogger(str(csv_path))]
    loggers.append(keras.callbacks.TensorBoard(str(root / "tb")))
    history = _fit(model, [monitor, cert, snap, *loggers], epochs=2, x=x)
    return SimpleNamespace(
        model=model, history=history.history, monitor=monitor, cert=cert,
        snap=snap, csv=csv_path, root=root,
    )  # fmt: skip


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    """A deel-lip convnet on 8x8x1 images, one epoch, certificate and snapshot."""
    tf.keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("conv_run")
    net = nets.lipschitz_convnet((8, 8, 1), filters=(8, 16), dense_units=32)
    model = deel_ebm.EnergyModel(
        net,
        k_coef_lip=5.0,
        sampler=deel_ebm.LangevinSampler(
            num_steps=5, step_size=1e-2, jit_compile=False
        ),
        buffer=deel_ebm.ReplayBuffer(capacity=256, domain=(-1.0, 1.0)),
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.0))
    rng = np.random.default_rng(0)
    x = np.tanh(rng.normal(size=(128, 8, 8, 1))).astype("float32")
    cert = LipschitzCertificate(probe_points=x[:32], ascent_steps=3, num_points=64)
    snap = SampleSnapshot(
        folder=root / "png", log_dir=root / "tb", num_samples=16, num_steps=3
    )
    with warnings.catch_warnings():
        # the power iteration on the first conv converges slowly (two close top
        # singular values); its estimate is still within 1e-4 of the exact norm
        warnings.filterwarnings("ignore", "power iteration did not converge")
        history = model.fit(
            x, batch_size=64, epochs=1, verbose=0, callbacks=[cert, snap]
        )
    return SimpleNamespace(
        model=model, history=history.history, cert=cert, snap=snap, root=root
    )


@pytest.fixture(scope="module")
def unconstrained_run():
    """An unconstrained MLP after 4 training steps, with a flagging certificate."""
    tf.keras.utils.set_random_seed(0)
    model = _fast(small_model(lipschitz=False))
    initial = lipschitz_report(model, ascent_steps=0)
    cert = LipschitzCertificate(ascent_steps=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _fit(model, [cert])
    return SimpleNamespace(
        model=model, history=history.history, cert=cert, warnings=caught,
        initial=initial,
    )  # fmt: skip


# ------------------------------------------------------------------ logs
def test_logs_reach_history(mlp_run):
    for key in LOG_KEYS + CERT_KEYS:
        assert len(mlp_run.history[key]) == 2, key
    assert len(mlp_run.history["sample_energy"]) == 1  # every_n_epochs=2


def test_logs_reach_csv_logger(mlp_run):
    with open(mlp_run.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for key in LOG_KEYS + CERT_KEYS:
        read = [float(row[key]) for row in rows]
        np.testing.assert_allclose(read, mlp_run.history[key], rtol=1e-6)


def test_logs_reach_tensorboard(mlp_run):
    tags = _tags(mlp_run.root / "tb" / "train")
    for key in LOG_KEYS + CERT_KEYS:
        assert tags[f"epoch_{key}"] == [0, 1], key


def test_monitor_per_step_values_average_to_epoch_means(mlp_run):
    batch, epoch = mlp_run.monitor.batch_history, mlp_run.monitor.epoch_history
    for key in ("energy_gap", "e_pos", "e_neg"):
        steps = np.reshape(batch[key], (2, 4))  # 2 epochs of 4 steps
        np.testing.assert_allclose(steps.mean(axis=1), epoch[key], rtol=1e-5)
        assert not np.allclose(steps, steps[:, :1])  # per step, not running means


def test_certificate_checks_every_n_batches_and_epochs(mlp_run):
    where = [report["where"] for report in mlp_run.cert.history]
    assert where == [
        "epoch 1, batch 2", "epoch 1, batch 4", "epoch 1",
        "epoch 2, batch 2", "epoch 2, batch 4", "epoch 2",
    ]  # fmt: skip


# ------------------------------------------------------------------ gap rules
@pytest.mark.parametrize("patience", [1, 3])
def test_collapse_needs_patience_epochs_of_small_gap(patience):
    monitor = EnergyGapMonitor(collapse_tol=1e-3, patience=patience)
    gaps = [0.5] + [1e-4] * patience + [0.5]
    with pytest.warns(RuntimeWarning, match="collapse: .*below collapse_tol"):
        statuses, _ = _drive_epochs(monitor, [_gap_logs(g) for g in gaps])
    assert statuses == [GAP_OK] * patience + [GAP_COLLAPSE, GAP_OK]


@pytest.mark.parametrize(
    "logs",
    [
        _gap_logs(1.0, e_pos=2e4),
        _gap_logs(3e4),
        _gap_logs(math.nan),
        _gap_logs(1.0, math.inf),
    ],
    ids=["energy", "gap", "nan", "inf"],
)
def test_blowup_on_threshold_or_non_finite(logs):
    monitor = EnergyGapMonitor(blowup_threshold=1e4, patience=5)
    with pytest.warns(RuntimeWarning, match="blow-up"):
        statuses, _ = _drive_epochs(monitor, [_gap_logs(1.0), logs])
    assert statuses == [GAP_OK, GAP_BLOWUP]


@pytest.mark.parametrize(
    "scales, expected",
    [
        ([1.0, 2.5, 6.0], [GAP_OK, GAP_OK, GAP_BLOWUP]),  # 2 epochs of >= 2x growth
        ([1.0, 1.9, 3.6], [GAP_OK, GAP_OK, GAP_OK]),  # below growth_factor
        ([0.01, 0.1, 1.0], [GAP_OK, GAP_OK, GAP_OK]),  # below GROWTH_MIN_SCALE
        ([1.0, 3.0, 4.0, 9.0], [GAP_OK] * 4),  # growth not consecutive
    ],
)
def test_blowup_on_geometric_growth_for_patience_epochs(scales, expected):
    monitor = EnergyGapMonitor(patience=2, growth_factor=2.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        statuses, _ = _drive_epochs(monitor, [_gap_logs(s) for s in scales])
    assert statuses == expected
    assert bool(caught) == (GAP_BLOWUP in expected)


def test_stop_on_failure_stops_and_says_why():
    monitor = EnergyGapMonitor(blowup_threshold=100.0, stop_on_failure=True)
    logs = [_gap_logs(1.0), _gap_logs(1e3), _gap_logs(1.0)]
    with pytest.warns(RuntimeWarning, match="Training stopped"):
        statuses, model = _drive_epochs(monitor, logs)
    assert statuses == [GAP_OK, GAP_BLOWUP]
    assert model.stop_training
    assert "blow-up" in model.stop_reason and "epoch 2" in model.stop_reason


def test_per_step_values_recovered_from_running_means():
    monitor = EnergyGapMonitor()
    monitor.set_model(SimpleNamespace(stop_training=False))
    monitor.on_train_begin()
    monitor.on_epoch_begin(0)
    steps = [1.0, 3.0, -2.0, 6.0]
    for batch, mean in enumerate(np.cumsum(steps) / np.arange(1, 5)):
        monitor.on_train_batch_end(batch, _gap_logs(float(mean)))
    np.testing.assert_allclose(monitor.batch_history["energy_gap"], steps)


def test_per_step_values_survive_a_metric_reset():
    """After a reset (DivergenceGuard drops a diverged step) the means restart."""
    tracker = keras.metrics.Mean(name="energy_gap")
    monitor = EnergyGapMonitor()
    monitor.set_model(SimpleNamespace(stop_training=False, metrics=[tracker]))
    monitor.on_train_begin()
    monitor.on_epoch_begin(0)
    steps = [1.0, 3.0, None, 5.0, 7.0]  # None: reset of the running means
    batch = 0
    for value in steps:
        if value is None:
            tracker.reset_state()
            continue
        tracker.update_state(value)
        monitor.on_train_batch_end(batch, _gap_logs(float(tracker.result())))
        batch += 1
    np.testing.assert_allclose(monitor.batch_history["energy_gap"], [1, 3, 5, 7])


def test_monitor_needs_energy_model_logs():
    monitor = EnergyGapMonitor()
    monitor.set_model(SimpleNamespace(stop_training=False))
    monitor.on_train_begin()
    with pytest.raises(ValueError, match="energy_gap"):
        monitor.on_epoch_end(0, {"loss": 1.0})


def test_collapse_rule_stops_fit():
    model = _fast(small_model())
    monitor = EnergyGapMonitor(collapse_tol=1e9, patience=1, stop_on_failure=True)
    with pytest.warns(RuntimeWarning, match="collapse"):
        history = _fit(model, [monitor], epochs=3)
    assert len(history.history["loss"]) == 1
    assert model.stop_reason.startswith("EnergyGapMonitor: collapse")


def test_per_batch_blowup_stops_fit_after_one_step():
    model = _fast(small_model())
    monitor = EnergyGapMonitor(
        blowup_threshold=1e-6, per_batch=True, stop_on_failure=True
    )
    with pytest.warns(RuntimeWarning, match="blow-up"):
        history = _fit(model, [monitor], epochs=3)
    assert len(monitor.batch_history["energy_gap"]) == 1
    assert len(history.history["loss"]) == 1
    assert "epoch 1, batch 1" in model.stop_reason


# ------------------------------------------------------------------ certificate
def _assert_bounds(reports, k, tol):
    assert reports
    for report in reports:
        assert 0 < report["lip_lower"] <= report["lip_upper"], report
        assert report["lip_upper"] <= k * (1 + tol), report
        assert report["lip_violation"] == 0 and report["k_coef_lip"] == k


def test_certificate_bounds_on_trained_deel_lip_mlp(mlp_run):
    _assert_bounds(mlp_run.cert.history, K, TOL)


def test_certificate_bounds_on_deel_lip_convnet(conv_run):
    _assert_bounds(conv_run.cert.history, 5.0, TOL)
    assert conv_run.history["lip_upper"] == [conv_run.cert.history[-1]["lip_upper"]]


def test_unconstrained_net_reports_bound_above_k(unconstrained_run):
    # orthogonal initialisation: 1-Lipschitz before training, not after 4 steps
    assert unconstrained_run.initial["lip_upper"] <= K * (1 + TOL)
    report = unconstrained_run.cert.history[-1]
    assert report["lip_upper"] > K * (1 + TOL)
    assert 0 < report["lip_lower"] <= report["lip_upper"]
    assert unconstrained_run.history["lip_violation"] == [1]
    messages = [str(w.message) for w in unconstrained_run.warnings]
    assert any("unconstrained layers" in m for m in messages), messages


def test_raise_mode_raises_on_unconstrained_net(unconstrained_run):
    cert = LipschitzCertificate(on_violation="raise", ascent_steps=0)
    with pytest.raises(LipschitzViolationError, match="not certified 10-Lipschitz"):
        _fit(unconstrained_run.model, [cert])


def test_non_finite_weights_are_a_violation():
    model = small_model()
    kernel = model.network.layers[0].kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    cert = LipschitzCertificate(ascent_steps=0)
    cert.set_model(model)
    cert.on_train_begin()
    logs = {}
    with pytest.warns(RuntimeWarning, match="non-finite weights"):
        cert.on_epoch_end(0, logs)
    assert logs["lip_violation"] == 1 and math.isnan(logs["lip_upper"])


def test_probe_points_of_the_wrong_shape_are_named():
    cert = LipschitzCertificate(probe_points=np.zeros((4, 3)))
    cert.set_model(small_model())
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        cert.on_train_begin()


def test_lower_bound_needs_two_points():
    with pytest.raises(ValueError, match="at least 2 points"):
        lipschitz_report(small_model(capacity=1), num_points=1)


# ------------------------------------------------------------------ snapshots
def test_snapshot_writes_png_for_2d(mlp_run):
    png = mlp_run.root / "png" / "samples_epoch0002.png"
    assert mlp_run.snap.paths == [png]  # every_n_epochs=2: epoch 2 only
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_snapshot_writes_png_for_images(conv_run):
    png = conv_run.root / "png" / "samples_epoch0001.png"
    assert conv_run.snap.paths == [png]
    assert png.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("run", ["mlp_run", "conv_run"])
def test_snapshot_writes_tensorboard_image(run, request):
    run = request.getfixturevalue(run)
    steps = _tags(run.root / "tb" / "samples")["samples"]
    assert steps == [len(run.history["loss"])]  # the last epoch, counted from 1


def test_snapshot_rejects_other_sample_shapes(tmp_path):
    snap = SampleSnapshot(folder=tmp_path)
    snap.set_model(SimpleNamespace(sample_shape=(3,)))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        snap.on_train_begin()


# ------------------------------------------------------------------ guard
def test_guard_restores_last_good_state_after_injected_nan():
    model = _fast(small_model())
    poison, after = _PoisonKernel(start=(1, 2)), _StateAfter(at=(1, 2))
    guard = DivergenceGuard(every_n_batches=1)
    with pytest.warns(RuntimeWarning) as record:  # also EnergyModel's own stop
        history = _fit(model, [poison, guard, after], epochs=3)
    assert _messages(record, "DivergenceGuard: non-finite") == 1
    _assert_same_state(after.state, poison.before)  # snapshot of the batch before
    assert [e["where"] for e in guard.events] == ["epoch 2, batch 3"]
    assert model.sampler.step_size.numpy() == pytest.approx(0.5 * 1e-2)
    assert model.optimizer.learning_rate.numpy() == pytest.approx(0.5 * 1e-3)
    assert len(history.history["loss"]) == 3 and model.stop_reason is None
    assert np.isfinite(history.history["loss"][-1])
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_guard_gives_up_after_max_attempts_with_message():
    model = _fast(small_model())
    poison = _PoisonKernel(start=(0, 1), every=True)
    guard = DivergenceGuard(max_attempts=2, every_n_batches=1)
    with pytest.warns(RuntimeWarning) as record:
        _fit(model, [poison, guard], epochs=5)
    assert _messages(record, "DivergenceGuard: non-finite") == 3
    assert len(guard.events) == 2
    assert model.stop_reason.startswith("DivergenceGuard: non-finite")
    assert "after 2 recoveries (max_attempts=2)" in model.stop_reason
    assert "stopped training" in model.stop_reason
    _assert_same_state(_state(model), poison.before)  # the last good batch's state


def test_guard_energy_limit_restores_start_and_stops():
    """A finite step is applied, then undone: weights, buffer and optimizer."""
    model = _fast(small_model())
    model.optimizer.build(model.trainable_variables)
    before = _state(model)
    guard = DivergenceGuard(max_attempts=0, energy_limit=1e-3)
    with pytest.warns(RuntimeWarning, match="energy_limit"):
        _fit(model, [guard], epochs=2)
    assert "above energy_limit" in model.stop_reason
    assert "the start of training" in model.stop_reason
    _assert_same_state(_state(model), before)


def test_guard_rejects_lr_factor_with_schedule():
    model = small_model()
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    guard = DivergenceGuard(lr_factor=0.5)
    guard.set_model(model)
    with pytest.raises(ValueError, match="lr_factor=0.5"):
        guard.on_train_begin()


# ------------------------------------------------------------------ deel-lip
def test_network_callback_runs_deel_lip_condense_and_monitor(tmp_path):
    model = _fast(small_model())
    layer = model.network.layers[0]
    layer.kernel.assign(3.0 * layer.kernel)  # same wbar, kernel norm ~3
    callbacks = [
        NetworkCallback(CondenseCallback(on_epoch=True)),
        NetworkCallback(MonitorCallback([layer.name], str(tmp_path), target="wbar")),
        LipschitzCertificate(ascent_steps=0),
    ]
    history = _fit(model, callbacks)
    # condensed: the kernel is its own constrained version (singular values ~1)
    assert np.linalg.norm(layer.kernel.numpy(), 2) == pytest.approx(1.0, abs=1e-2)
    assert f"{layer.name}_wbar_sigmas" in _tags(tmp_path / "metrics")
    assert history.history["lip_upper"][0] <= K * (1 + TOL)


def test_network_callback_forwards_stop_training():
    class StopNow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    model = _fast(small_model())
    history = _fit(model, [NetworkCallback(StopNow())], epochs=3)
    assert len(history.history["loss"]) == 1


# ------------------------------------------------------------------ configs
CONFIGURED = {
    "gap": lambda p: EnergyGapMonitor(
        collapse_tol=1e-2, patience=2, blowup_threshold=50.0, growth_factor=3.0,
        stop_on_failure=True, per_batch=True,
    ),
    "certificate": lambda p: LipschitzCertificate(
        every_n_batches=2, tol=0.01, on_violation="raise",
        probe_points=[[0.0, 1.0], [1.0, 0.5]], ascent_steps=3, num_points=16,
        seed=4, power_tol=1e-3,
    ),
    "snapshot": lambda p: SampleSnapshot(
        every_n_epochs=2, folder=p / "png", num_samples=8, num_steps=3,
        domain=(-2, 2), log_dir=p / "tb",
    ),
    "guard": lambda p: DivergenceGuard(
        max_attempts=1, step_size_factor=0.25, lr_factor=1.0, energy_limit=1e3,
        every_n_batches=5,
    ),
    "network_condense": lambda p: NetworkCallback(
        CondenseCallback(on_epoch=False, on_batch=True)
    ),
    "network_monitor": lambda p: NetworkCallback(
        MonitorCallback(["dense"], str(p), target="wbar", what="all")
    ),
    "network_registered": lambda p: NetworkCallback(EnergyGapMonitor(patience=7)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONFIGURED))
def test_get_config_round_trips(name, tmp_path):
    callback = CONFIGURED[name](tmp_path)
    config = callback.get_config()
    json.dumps(config)  # plain data, as Keras saves it
    for clone in (
        type(callback).from_config(config),
        keras.utils.deserialize_keras_object(
            keras.utils.serialize_keras_object(callback)
        ),
    ):
        assert type(clone) is type(callback)
        assert clone.get_config() == config
        if isinstance(callback, NetworkCallback):
            assert type(clone.callback) is type(callback.callback)


def test_network_callback_names_unserialisable_callback():
    callback = NetworkCallback(keras.callbacks.TerminateOnNaN())
    with pytest.raises(TypeError, match="TerminateOnNaN"):
        callback.get_config()


# ------------------------------------------------------------------ bad input
BAD_ARGUMENTS = [
    (lambda: EnergyGapMonitor(collapse_tol=0.0), ValueError, "collapse_tol.*0.0"),
    (lambda: EnergyGapMonitor(patience=1.5), TypeError, "patience.*1.5"),
    (lambda: EnergyGapMonitor(growth_factor=1.0), ValueError, "growth_factor.*1.0"),
    (lambda: LipschitzCertificate(tol=-1.0), ValueError, "tol.*-1.0"),
    (lambda: LipschitzCertificate(tol="big"), TypeError, "tol.*'big'"),
    (lambda: LipschitzCertificate(on_violation="log"), ValueError, "'log'"),
    (lambda: LipschitzCertificate(ascent_steps=-1), ValueError, "ascent_steps.*-1"),
    (lambda: LipschitzCertificate(ascent_steps=2.5), TypeError, "ascent_steps.*2.5"),
    (lambda: LipschitzCertificate(num_points=0), ValueError, "num_points.*0"),
    (lambda: LipschitzCertificate(power_tol=0), ValueError, "power_tol.*0"),
    (lambda: LipschitzCertificate(probe_points=[[0, math.nan]]), ValueError, "NaN"),
    (lambda: LipschitzCertificate(probe_points=[1.0, 2.0]), ValueError, r"\(2,\)"),
    (lambda: SampleSnapshot(), ValueError, "folder or a log_dir"),
    (lambda: SampleSnapshot(folder=3), TypeError, "folder.*3"),
    (
        lambda: SampleSnapshot(folder="x", every_n_epochs=0),
        ValueError,
        "every_n_epochs.*0",
    ),
    (lambda: SampleSnapshot(folder="x", num_steps=-1), ValueError, "num_steps.*-1"),
    (
        lambda: SampleSnapshot(folder="x", domain=(1, 0)),
        ValueError,
        r"domain.*\(1, 0\)",
    ),
    (lambda: SampleSnapshot(folder="x", domain=3.0), TypeError, "domain.*3.0"),
    (lambda: DivergenceGuard(max_attempts=-1), ValueError, "max_attempts.*-1"),
    (lambda: DivergenceGuard(max_attempts=1.5), TypeError, "max_attempts.*1.5"),
    (lambda: DivergenceGuard(lr_factor=1.5), ValueError, "lr_factor.*1.5"),
    (lambda: DivergenceGuard(step_size_factor=0), ValueError, "step_size_factor"),
    (lambda: DivergenceGuard(energy_limit=-1.0), ValueError, "energy_limit.*-1.0"),
    (lambda: NetworkCallback("condense"), TypeError, "'condense'"),
]


@pytest.mark.parametrize("make, error, match", BAD_ARGUMENTS)
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()
