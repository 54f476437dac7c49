"""tensorboard_callbacks: what a 2-epoch fit really writes into the event files."""

from pathlib import Path

import numpy as np
import pytest
from conftest import mixture_2d, small_model

from deel_ebm._backend import keras, tf
from deel_ebm.callbacks import (
    EnergyGapMonitor,
    LipschitzCertificate,
    SampleSnapshot,
    tensorboard_callbacks,
)
from deel_ebm.callbacks._tensorboard import MAX_PROBE_POINTS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCALARS = ("e_pos", "e_neg", "energy_gap", "gap_status", "lip_upper", "lip_lower")


def _events(log_dir):
    """{tag: [(step, summary value)]} of every event file under log_dir."""
    found = {}
    for path in Path(log_dir).rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


def _scalar(value):
    if value.HasField("tensor"):
        return float(tf.make_ndarray(value.tensor))
    return float(value.simple_value)


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    tf.keras.utils.set_random_seed(0)
    log_dir = tmp_path_factory.mktemp("tb")
    x = mixture_2d(512)[0]
    model = small_model()
    model.sampler.jit_compile = False  # interpreted chains: a fast test fit
    callbacks = tensorboard_callbacks(
        log_dir, probe_points=x[:64], num_samples=16, num_steps=3
    )
    history = model.fit(x, batch_size=128, epochs=2, verbose=0, callbacks=callbacks)
    return log_dir, history.history, callbacks


def test_the_list_is_the_monitors_then_keras_tensorboard(tb_run):
    _, _, callbacks = tb_run
    kinds = [type(c) for c in callbacks]
    expected = [EnergyGapMonitor, LipschitzCertificate, SampleSnapshot]
    assert kinds == [*expected, keras.callbacks.TensorBoard]


def test_event_files_hold_energies_gap_and_certificate(tb_run):
    log_dir, history, _ = tb_run
    events = _events(log_dir / "train")
    for key in SCALARS:
        written = events[f"epoch_{key}"]
        assert [step for step, _ in written] == [0, 1], key
        values = [_scalar(v) for _, v in written]
        np.testing.assert_allclose(values, history[key], rtol=1e-6, err_msg=key)
    assert max(history["lip_upper"]) <= 10.0 * (1 + 1e-3)  # small_model: k = 10


def test_event_files_hold_sample_images(tb_run):
    log_dir, _, _ = tb_run
    images = _events(log_dir / "samples")["samples"]
    assert [step for step, _ in images] == [1, 2]  # every epoch, counted from 1
    for _, value in images:
        assert value.metadata.plugin_data.plugin_name == "images"
        width, height, png = tf.make_ndarray(value.tensor)[:3]
        assert int(width) > 100 and int(height) > 100
        assert png.startswith(PNG_MAGIC)


def test_probe_points_are_capped():
    x = np.zeros((MAX_PROBE_POINTS + 10, 2), np.float32)
    certificate = tensorboard_callbacks("tb", probe_points=x)[1]
    assert certificate.probe_points.shape == (MAX_PROBE_POINTS, 2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"log_dir": None}, TypeError, "log_dir"),
        ({"log_dir": "tb", "every_n_epochs": 0}, ValueError, "every_n_epochs"),
        ({"log_dir": "tb", "probe_points": [1.0]}, ValueError, "probe_points"),
        ({"log_dir": "tb", "num_samples": -1}, ValueError, "num_samples"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        tensorboard_callbacks(**kwargs)
