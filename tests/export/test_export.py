"""Save/load, exact resume, verified restores and exports of an EnergyModel."""

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import h5py
import numpy as np
import pytest
from conftest import max_grad_norm, mixture_2d, small_model

import deel_ebm
from deel_ebm import export
from deel_ebm._backend import tf
from deel_ebm.core import checkpoints, inputs

K = 10.0


def _state(model):
    """Every variable of the model and its optimizer, by name, as numpy."""
    pairs = [(v.name, v.numpy()) for v in model.weights]
    pairs += [("optimizer/" + v.name, v.numpy()) for v in model.optimizer.variables]
    return pairs


def _assert_same_state(got, expected):
    """Bit-equal, variable by variable (names differ across model instances)."""
    assert len(got) == len(expected)
    for (_, a), (name, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b, err_msg=name)


def _fresh_model():
    """A new model with its optimizer slots created (they are restored too)."""
    model = small_model()
    model.optimizer.build(model.trainable_variables)
    return model


@pytest.fixture(scope="module")
def trained():
    """A Lipschitz MLP energy after one epoch (shared: use it read-only)."""
    tf.keras.utils.set_random_seed(0)
    model = small_model(k=K)
    model.fit(mixture_2d(512)[0], batch_size=128, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def probe():
    return np.random.default_rng(2).uniform(-4, 4, (20_000, 2)).astype("float32")


# ------------------------------------------------------------ save / load
def test_save_load_round_trip_keeps_the_whole_training_state(tmp_path, data2d):
    model = small_model(seed=5)
    model.sampler.step_size.assign(0.02)  # runtime changes, as a callback makes
    model.energy_loss.l2_weight.assign(0.05)
    model.fit(data2d, batch_size=128, epochs=1, verbose=0)
    model.sample(8)  # advances the sample counter
    path = tmp_path / "ebm.keras"
    model.save(path)
    loaded = tf.keras.models.load_model(path)  # no custom objects
    checked = export.load_model(path)
    x = np.concatenate([data2d, model.buffer.storage.numpy()])
    for other in (loaded, checked):
        assert type(other) is deel_ebm.EnergyModel
        assert (other.k_coef_lip, other.seed) == (K, 5)
        assert other.sample_shape == model.sample_shape
        for part in ("sampler", "buffer", "energy_loss"):
            a, b = getattr(model, part), getattr(other, part)
            assert type(a) is type(b) and a.get_config() == b.get_config()
        assert float(other.sampler.step_size.numpy()) == pytest.approx(0.02)
        np.testing.assert_array_equal(other.buffer.storage, model.buffer.storage)
        assert other.optimizer.get_config() == model.optimizer.get_config()
        _assert_same_state(_state(other), _state(model))
        np.testing.assert_array_equal(other.energy(x), model.energy(x))
    # the sample counter is saved: the next default-seed draws agree
    np.testing.assert_array_equal(loaded.sample(16), model.sample(16))
    # training continues, exactly as the original would
    before = [w.numpy().copy() for w in loaded.trainable_weights]
    loaded.fit(data2d, batch_size=128, epochs=1, verbose=0)
    model.fit(data2d, batch_size=128, epochs=1, verbose=0)
    assert any(np.any(w.numpy() != b) for w, b in zip(loaded.trainable_weights, before))
    _assert_same_state(_state(loaded), _state(model))


@pytest.mark.parametrize("name", ["ebm", "ebm.h5", "ebm.weights.h5"])
def test_save_refuses_formats_that_cannot_rebuild_the_model(trained, tmp_path, name):
    with pytest.raises(ValueError, match=".keras"):
        trained.save(tmp_path / name)
    assert not (tmp_path / name).exists()


# ------------------------------------------------------------ exact resume
class _Crash(Exception):
    pass


class _Interrupt(tf.keras.callbacks.Callback):
    """Raises at the start of (epoch, batch): a crash in the middle of fit."""

    def __init__(self, epoch, batch=0):
        super().__init__()
        self.at, self._epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self._epoch, batch) == self.at:
            raise _Crash(f"crash at epoch {self._epoch}, batch {batch}")


def _resume_model(init_seed):
    # the global seed drives the (unseeded) power-iteration init of deel-lip: a
    # resumed model built under another seed shows the restore covers everything
    tf.keras.utils.set_random_seed(init_seed)
    return small_model(seed=3, capacity=512)


_EPOCHS, _BATCH = 3, 64


@pytest.fixture(scope="module")
def resume_data():
    return mixture_2d(250, seed=4)[0]  # 4 steps per epoch, the last one partial


@pytest.fixture(scope="module")
def uninterrupted(resume_data):
    model = _resume_model(1)
    model.fit(resume_data, batch_size=_BATCH, epochs=_EPOCHS, verbose=0)
    assert int(model.optimizer.iterations) == 4 * _EPOCHS
    return _state(model)


def _interrupted_then_resumed(x, backup_dir, interrupt, **backup_kw):
    backup = tf.keras.callbacks.BackupAndRestore(backup_dir, **backup_kw)
    first = _resume_model(1)
    with pytest.raises(_Crash):
        first.fit(x, batch_size=_BATCH, epochs=_EPOCHS, verbose=0,
                  callbacks=[backup, interrupt])  # fmt: skip
    done = int(first.optimizer.iterations)
    resumed = _resume_model(2)  # a new process would build a new model
    backup = tf.keras.callbacks.BackupAndRestore(backup_dir, **backup_kw)
    resumed.fit(x, batch_size=_BATCH, epochs=_EPOCHS, verbose=0, callbacks=[backup])
    return done, resumed


def test_backup_and_restore_resume_is_bit_exact(tmp_path, resume_data, uninterrupted):
    done, resumed = _interrupted_then_resumed(
        resume_data, tmp_path / "backup", _Interrupt(epoch=2, batch=1)
    )
    assert done == 9  # the epoch-2 work is redone from the epoch-1 backup
    _assert_same_state(_state(resumed), uninterrupted)


def test_fit_after_an_interrupted_backup_run_starts_where_it_is_told(
    tmp_path, resume_data
):
    model = _resume_model(1)
    backup = tf.keras.callbacks.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(_Crash):
        model.fit(resume_data, batch_size=_BATCH, epochs=_EPOCHS, verbose=0,
                  callbacks=[backup, _Interrupt(epoch=2)])  # fmt: skip
    # Keras leaves the interrupted call's state on the model: a plain fit must
    # not resume from it (it would skip epochs 0 and 1)
    hist = model.fit(resume_data, batch_size=_BATCH, epochs=2, verbose=0)
    assert hist.epoch == [0, 1]


@pytest.mark.slow
def test_mid_epoch_backup_and_restore_resume_is_bit_exact(
    tmp_path, resume_data, uninterrupted
):
    done, resumed = _interrupted_then_resumed(
        resume_data, tmp_path / "backup", _Interrupt(epoch=1, batch=2), save_freq=1
    )
    assert done == 6  # resumed at epoch 1, batch 2
    _assert_same_state(_state(resumed), uninterrupted)


def test_checkpoint_then_initial_epoch_resume_is_bit_exact(
    tmp_path, resume_data, uninterrupted
):
    first = _resume_model(1)
    first.fit(resume_data, batch_size=_BATCH, epochs=1, verbose=0)
    prefix = tf.train.Checkpoint(model=first).write(str(tmp_path / "ckpt" / "ebm"))
    resumed = _resume_model(2)
    assert checkpoints.restore_checkpoint(resumed, prefix) == prefix
    _assert_same_state(_state(resumed), _state(first))
    resumed.fit(
        resume_data, batch_size=_BATCH, epochs=_EPOCHS, initial_epoch=1, verbose=0
    )
    _assert_same_state(_state(resumed), uninterrupted)


def test_resumable_dataset_order_is_a_function_of_seed_and_position():
    x = tf.range(10, dtype=tf.float32)[:, None]
    counter = tf.Variable(0, dtype=tf.int64)

    def epoch_batches(start, seed=7, shuffle=True, initial_epoch=0):
        counter.assign(start)
        ds = inputs.resumable_dataset(x, 4, shuffle, seed, counter, initial_epoch)
        assert int(ds.cardinality()) == 3
        it, out = iter(ds), []
        for _ in range(3 - start % 3):  # what fit pulls in a (resumed) epoch
            out.append(next(it).numpy().ravel().astype(int).tolist())
            counter.assign_add(1)
        return out

    first, second = epoch_batches(0), epoch_batches(3)
    for epoch in (first, second):  # each epoch: every sample once, batch sizes
        assert [len(b) for b in epoch] == [4, 4, 2]
        assert sorted(sum(epoch, [])) == list(range(10))
    assert first != second
    assert epoch_batches(0) == first  # same seed, same order
    assert epoch_batches(0, seed=8) != first
    assert epoch_batches(4) == second[1:]  # resumed mid-epoch: the same batches
    assert epoch_batches(0, initial_epoch=1) == second
    assert epoch_batches(0, shuffle=False) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_resumable_dataset_does_not_autotune():
    # tf.data's autotuning thread held up the end of each epoch (its iterator's
    # destruction) for up to tens of seconds in fit
    counter = tf.Variable(0, dtype=tf.int64)
    ds = inputs.resumable_dataset(tf.zeros((10, 2)), 4, True, 0, counter)
    assert ds.options().autotune.enabled is False


def test_fit_arrays_validation_split_and_keras_fallback():
    x = np.arange(20, dtype="float32").reshape(10, 2)
    counter = tf.Variable(0, dtype=tf.int64)
    kwargs = {"validation_split": 0.2, "shuffle": False}
    ds, y, batch_size = inputs.arrays_as_dataset(x, None, 4, 0, counter, kwargs)
    assert y is None and batch_size is None and "shuffle" not in kwargs
    assert "validation_batch_size" not in kwargs  # batched in the dataset
    val = list(kwargs["validation_data"].as_numpy_iterator())
    assert [len(b[0]) for b in val] == [2]  # (x,) tuples of the training batch size
    np.testing.assert_array_equal(val[0][0], x[8:])  # the tail
    np.testing.assert_array_equal(np.concatenate(list(ds.as_numpy_iterator())), x[:8])
    kwargs = {"validation_data": (x, x[:, 0]), "validation_batch_size": 3}
    inputs.arrays_as_dataset(x, None, 4, 0, counter, kwargs)
    val = list(kwargs["validation_data"].as_numpy_iterator())
    assert [len(b[1]) for b in val] == [3, 3, 3, 1]  # in order, (x, y) kept
    np.testing.assert_array_equal(np.concatenate([b[1] for b in val]), x[:, 0])
    with pytest.raises(ValueError, match="validation_split"):
        inputs.arrays_as_dataset(x, None, 4, 0, counter, {"validation_split": 1})
    weights = {"sample_weight": np.ones(10)}
    assert inputs.arrays_as_dataset(x, None, 4, 0, counter, weights)[0] is x


# ------------------------------------------------------------ damaged checkpoints
@pytest.fixture(scope="module")
def checkpoint(trained, tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt")
    return tf.train.Checkpoint(model=trained).write(str(directory / "ebm"))


def _damage(prefix, how):
    data, index = prefix + ".data-00000-of-00001", prefix + ".index"
    if how == "truncated data":
        raw = open(data, "rb").read()
        open(data, "wb").write(raw[: len(raw) // 2])
    elif how == "flipped byte":
        raw = bytearray(open(data, "rb").read())
        raw[len(raw) // 3] ^= 0xFF
        open(data, "wb").write(bytes(raw))
    elif how == "truncated index":
        raw = open(index, "rb").read()
        open(index, "wb").write(raw[: len(raw) // 2])
    elif how == "missing data":
        os.remove(data)


@pytest.mark.parametrize(
    "how", ["truncated data", "flipped byte", "truncated index", "missing data"]
)
def test_damaged_checkpoint_raises_and_changes_nothing(checkpoint, tmp_path, how):
    prefix = str(tmp_path / "ebm")
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(checkpoint + suffix, prefix + suffix)
    _damage(prefix, how)
    model = _fresh_model()
    before = _state(model)
    with pytest.raises(checkpoints.ModelLoadError, match="truncated or corrupted"):
        checkpoints.restore_checkpoint(model, prefix)
    _assert_same_state(_state(model), before)


def test_checkpoint_of_another_model_is_rolled_back(tmp_path):
    other = deel_ebm.EnergyModel(
        deel_ebm.nets.lipschitz_mlp((2,), units=(32, 16)),
        buffer=deel_ebm.ReplayBuffer(capacity=1000),
    )
    model = _fresh_model()
    before = _state(model)
    for root, name in ((other, "other"), (model.network, "network_only")):
        prefix = tf.train.Checkpoint(model=root).write(str(tmp_path / name))
        with pytest.raises(checkpoints.ModelLoadError, match="does not match"):
            checkpoints.restore_checkpoint(model, prefix)
        _assert_same_state(_state(model), before)  # no half-restored model


def _backup_dir(model, tmp_path):
    directory = tmp_path / "backup"
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), str(directory / "chief"), max_to_keep=1
    )
    return directory, manager.save()


@pytest.mark.parametrize("how", ["flipped byte", "missing index"])
def test_damaged_backup_stops_fit_before_any_step(trained, tmp_path, data2d, how):
    directory, prefix = _backup_dir(trained, tmp_path)
    if how == "missing index":  # Keras alone would silently start from scratch
        os.remove(prefix + ".index")
    else:
        _damage(prefix, how)
    model = _fresh_model()
    before = _state(model)
    backup = tf.keras.callbacks.BackupAndRestore(str(directory))
    with pytest.raises(checkpoints.ModelLoadError, match="corrupted"):
        model.fit(data2d, batch_size=128, callbacks=[backup], verbose=0)
    _assert_same_state(_state(model), before)


def test_sound_backup_is_restored_by_fit(trained, tmp_path, data2d):
    directory, _ = _backup_dir(trained, tmp_path)
    model = _fresh_model()
    checkpoints.check_backups(model, [tf.keras.callbacks.BackupAndRestore(directory)])
    _assert_same_state(_state(model), _state(trained))
    model = _fresh_model()  # a CheckpointManager directory is a valid path too
    checkpoints.restore_checkpoint(model, directory / "chief")
    _assert_same_state(_state(model), _state(trained))


# ------------------------------------------------------------ damaged .keras files
@pytest.fixture(scope="module")
def keras_file(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "ebm.keras"
    trained.save(path)
    return path


def _rewrite(src, dst, drop=(), edit=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            data = zin.read(name)
            zout.writestr(name, edit(name, data) if edit else data)


def _strip_optimizer(name, data):
    if name != "model.weights.h5":
        return data
    out = io.BytesIO()
    with h5py.File(io.BytesIO(data), "r") as src, h5py.File(out, "w") as dst:
        for key in src:
            if key != "optimizer":
                src.copy(key, dst)
    return out.getvalue()


@pytest.mark.parametrize(
    "how, match",
    [
        ("truncated", "not a valid .keras"),
        ("flipped byte", "corrupted|damaged"),
        ("missing weights", "incomplete"),
        ("no optimizer state", "optimizer state was not restored"),
    ],
)
def test_damaged_keras_file_raises(keras_file, tmp_path, how, match):
    path = tmp_path / "ebm.keras"
    raw = keras_file.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "flipped byte":
        with zipfile.ZipFile(keras_file) as archive:
            info = archive.getinfo("model.weights.h5")
        damaged = bytearray(raw)
        damaged[info.header_offset + 100 + info.compress_size // 2] ^= 0xFF
        path.write_bytes(bytes(damaged))
    elif how == "missing weights":
        _rewrite(keras_file, path, drop=("model.weights.h5",))
    else:
        _rewrite(keras_file, path, edit=_strip_optimizer)
    with pytest.raises(export.ModelLoadError, match=match):
        export.load_model(path)
    if how == "no optimizer state":  # what plain Keras makes of it: a silent reset
        assert int(tf.keras.models.load_model(path).optimizer.iterations) == 0


def test_untrained_model_loads_with_its_fresh_optimizer(tmp_path):
    small_model().save(tmp_path / "new.keras")  # optimizer not built: no false alarm
    loaded = export.load_model(tmp_path / "new.keras")
    assert int(loaded.optimizer.iterations) == 0


# ------------------------------------------------------------ exports
def _assert_plain(plain):
    layers, stack = [], [plain]
    while stack:
        layer = stack.pop()
        layers.append(layer)
        stack.extend(getattr(layer, "layers", []))
    modules = {type(layer).__module__ for layer in layers}
    assert not [m for m in modules if m.startswith("deel")], modules


def test_export_vanilla_matches_the_mlp_energy(trained, probe):
    plain = export.export_vanilla(trained)
    _assert_plain(plain)
    x = np.concatenate([probe, trained.buffer.storage.numpy()])
    got, expected = plain.predict(x, batch_size=4096, verbose=0), trained.energy(x)
    assert got.shape == (len(x),)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _convnet_model():
    net = deel_ebm.nets.lipschitz_convnet((8, 8, 1), filters=(8, 16), dense_units=32)
    model = deel_ebm.EnergyModel(
        net,
        k_coef_lip=K,
        sampler=deel_ebm.LangevinSampler(num_steps=5, step_size=1e-2),
        buffer=deel_ebm.ReplayBuffer(capacity=128, domain=(0.0, 1.0)),
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    return model


def test_export_vanilla_matches_the_convnet_energy_and_bound():
    model = _convnet_model()
    plain = export.export_vanilla(model)
    _assert_plain(plain)
    x = np.random.default_rng(1).uniform(-0.5, 1.5, (1024, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(plain(x), model.energy(x), rtol=1e-5, atol=1e-5)
    g_plain, g_model = max_grad_norm(plain, x), max_grad_norm(model.energy, x)
    assert g_plain <= K * (1 + 1e-3)
    assert g_plain == pytest.approx(g_model, rel=1e-3)


def test_exported_mlp_energy_is_k_lipschitz(trained, probe):
    plain = export.export_vanilla(trained)
    x = np.concatenate([probe, trained.buffer.storage.numpy()])
    g_plain = max_grad_norm(plain, x)
    assert g_plain <= K * (1 + 1e-3)
    # the same function as the model's, not a flat one: the bound can fail
    assert g_plain == pytest.approx(max_grad_norm(trained.energy, x), rel=1e-3)
    assert g_plain > 0.2 * K


_SERVE = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras = tf-keras, as deel-ebm's
    import numpy as np
    import tensorflow as tf

    x = np.load("x.npy")
    served = tf.saved_model.load("served")
    out = {
        "signatures": sorted(served.signatures),
        "energy": served.signatures["energy"](x=tf.constant(x))["energy"].numpy(),
        "samples": served.signatures["sample"](
            n=tf.constant(32), seed=tf.constant([1, 2], tf.int64)
        )["samples"].numpy(),
        "k": float(served.k_coef_lip.numpy()),
    }
    plain = tf.keras.models.load_model("energy.keras", safe_mode=True)
    out["plain"] = plain(x).numpy()
    out["modules"] = sorted(
        m for m in sys.modules if m.split(".")[0] in ("deel_ebm", "deel")
    )
    print(json.dumps({k: np.asarray(v).tolist() for k, v in out.items()}))
    """
)


def test_exports_load_in_a_process_without_deel(trained, tmp_path, probe):
    x = probe[:256]
    np.save(tmp_path / "x.npy", x)
    export.export_vanilla(trained).save(tmp_path / "energy.keras")
    assert (
        export.export_saved_model(trained, tmp_path / "served") == tmp_path / "served"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    run = subprocess.run(
        [sys.executable, "-c", _SERVE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["modules"] == []  # neither deel_ebm nor deel.lip was imported
    assert {"energy", "sample", "serving_default"} <= set(out["signatures"])
    expected = trained.energy(x).numpy()
    np.testing.assert_allclose(out["energy"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["plain"], expected, rtol=1e-5, atol=1e-5)
    assert out["k"] == K
    # sample: num_steps Langevin steps from prior draws, reproducible by seed
    served = tf.saved_model.load(str(tmp_path / "served"))
    again = served.sample(tf.constant(32), tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_allclose(out["samples"], again, rtol=1e-5, atol=1e-5)
    init = trained.buffer.prior_sample(32, [0, 3])
    chain = deel_ebm.sample_chain(trained.sampler, trained, init, [4, 5]).state.x
    np.testing.assert_allclose(
        served.sample_from(init, tf.constant([4, 5], tf.int64)), chain, atol=1e-4
    )


# ------------------------------------------------------------ bad input
def test_export_functions_refuse_bad_input(trained, tmp_path):
    for fn in (export.export_vanilla, export.export_saved_model):
        args = (tmp_path / "out",) if fn is export.export_saved_model else ()
        with pytest.raises(TypeError, match="EnergyModel"):
            fn(trained.network, *args)
    with pytest.raises(TypeError, match="check"):
        export.export_vanilla(trained, check="yes")
    with pytest.raises(TypeError, match="path"):
        export.export_saved_model(trained, 42)
    with pytest.raises(TypeError, match="num_steps"):
        export.export_saved_model(trained, tmp_path / "out", num_steps=2.5)
    with pytest.raises(ValueError, match="num_steps"):
        export.export_saved_model(trained, tmp_path / "out", num_steps=-1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export.export_saved_model(trained, tmp_path / "file")
    assert not (tmp_path / "out").exists()


def test_load_functions_refuse_bad_input(trained, tmp_path):
    with pytest.raises(TypeError, match="path"):
        export.load_model(42)
    with pytest.raises(FileNotFoundError, match="no saved model"):
        export.load_model(tmp_path / "missing.keras")
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(export.ModelLoadError, match="expected a .keras"):
        export.load_model(tmp_path / "model.txt")
    export.export_vanilla(trained).save(tmp_path / "plain.keras")
    with pytest.raises(export.ModelLoadError, match="not a deel_ebm EnergyModel"):
        export.load_model(tmp_path / "plain.keras")
    with pytest.raises(TypeError, match="target"):
        checkpoints.restore_checkpoint("model", tmp_path)
    with pytest.raises(TypeError, match="path"):
        checkpoints.restore_checkpoint(trained, 42)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.restore_checkpoint(trained, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.restore_checkpoint(trained, tmp_path / "empty")
    assert issubclass(export.ModelLoadError, ValueError)
    assert export.ModelLoadError is checkpoints.ModelLoadError
