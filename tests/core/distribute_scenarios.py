"""Scenarios of tests/test_distribute.py, each run in a fresh process.

Logical devices must be configured before TensorFlow initialises its devices, so
each scenario runs in its own interpreter (``python distribute_scenarios.py
SCENARIO OUT_DIR``) and writes what it measured to ``OUT_DIR/SCENARIO.json``;
the tests assert on that file. Scenarios:

- ``mirrored``: a ``MirroredStrategy`` over two logical CPUs: shards, pairing of
  slots and states, global metrics, save/load under a strategy, refused
  configurations.
- ``compare``: one device against two replicas with the same global batch, on
  ``8gaussians``: energy gap and exact KL.
- ``worker``: one worker of a ``MultiWorkerMirroredStrategy`` (``TF_CONFIG`` set
  by the test): trains with ``BackupAndRestore``, saves its final weights and
  buffer, saves the model the multi-worker way, resumes a new model from the
  backup.
- ``joint``: a ``JointEnergyModel`` fitted under a ``MirroredStrategy`` over two
  logical CPUs, saved and reloaded.
- ``load_worker_save``: a fresh process without a strategy loads the chief's
  ``.keras`` file and compares it with what the workers held.
"""

import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# tests/, where conftest.py lives, is the parent of this script's folder
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from conftest import small_model  # noqa: E402

from deel_ebm import datasets, metrics  # noqa: E402
from deel_ebm._backend import tf  # noqa: E402

CAPACITY = 1000
BATCH = 128


def _two_logical_cpus():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    return ["/cpu:0", "/cpu:1"]


def _model(capacity=CAPACITY, **kwargs):
    """conftest's small model (2 x 32 Lipschitz MLP) on the domain (-4.5, 4.5)."""
    return small_model(capacity=capacity, domain=(-4.5, 4.5), **kwargs)


def _mixture(n, seed=0):
    x, _ = datasets.load_2d("8gaussians", n_train=n, n_test=1, seed=seed)
    return x


def _probe():
    """Points where saved and loaded models' energies are compared."""
    return np.random.default_rng(1).uniform(-3, 3, (500, 2)).astype("float32")


def _copies(variable):
    """Every replica's copy of a (mirrored) variable, as numpy."""
    return [v.numpy() for v in getattr(variable, "values", [variable])]


def _synchronised(model):
    variables = model.weights + model.optimizer.variables
    return [
        v for v in variables if v.synchronization != tf.VariableSynchronization.ON_READ
    ]


def _error(fn):
    try:
        fn()
    except ValueError as err:
        return str(err)
    return None


# ------------------------------------------------------------------ mirrored
def mirrored(out_dir):
    strategy = tf.distribute.MirroredStrategy(_two_logical_cpus())
    result = {"replicas": strategy.num_replicas_in_sync}
    half = CAPACITY // 2
    x = _mixture(512)
    # replicas see different halves of each batch: make their energies differ
    x[BATCH // 2 : BATCH] *= 0.25

    # 1. one step: each replica writes its own shard, metrics are global means
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():  # XLA chains under a strategy: see _compare and worker
        model = _model(jit_compile=False)
    before = model.buffer.storage.numpy()
    e_init = model(tf.constant(x[:BATCH]), training=True).numpy()
    batch_logs = []
    record = tf.keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: batch_logs.append(dict(logs))
    )
    hist = model.fit(
        x[:BATCH],
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[record],
    )
    after = model.buffer.storage.numpy()
    changed = np.flatnonzero(np.any(after != before, axis=1))
    result["step"] = {
        "history": {k: v[-1] for k, v in hist.history.items()},
        "batch_logs": batch_logs,
        "e_pos_global": float(e_init.mean()),
        "e_pos_replica0": float(e_init[: BATCH // 2].mean()),
        "e_pos_replica1": float(e_init[BATCH // 2 :].mean()),
        "changed_per_shard": [
            int(np.sum(changed < half)),
            int(np.sum(changed >= half)),
        ],
        "slots_0": changed[changed < half].tolist(),
        "slots_1": (changed[changed >= half] - half).tolist(),
        "copies_equal": all(  # metrics' variables are per replica (ON_READ)
            all(np.array_equal(c, cs[0]) for c in cs)
            for cs in map(_copies, _synchronised(model))
        ),
        "iterations": int(model.optimizer.iterations.numpy()),
    }

    # 2. more epochs; evaluate reports global means
    t0 = time.perf_counter()
    hist = model.fit(x, batch_size=BATCH, epochs=2, verbose=0)
    result["fit_seconds"] = time.perf_counter() - t0
    result["fit_history"] = hist.history
    x_eval = x[:256]
    logs = model.evaluate(x_eval, batch_size=BATCH, verbose=0, return_dict=True)
    energies = model.energy(x_eval).numpy()
    result["evaluate"] = {
        "logs": logs,
        "e_pos_global": float(energies.mean()),
        "e_pos_first_half": float(energies[: BATCH // 2].mean()),
    }
    result["buffer_copies_equal"] = all(
        np.array_equal(c, _copies(model.buffer.storage)[0])
        for c in _copies(model.buffer.storage)
    )

    # 3. save inside and outside the scope; load under a strategy and without
    probe = _probe()
    inside, outside = (os.path.join(out_dir, n) for n in ("in.keras", "out.keras"))
    with strategy.scope():
        model.save(inside)
    model.save(outside)
    expected = {
        "energy": model.energy(probe).numpy(),
        "buffer": model.buffer.storage.numpy(),
        "iterations": int(model.optimizer.iterations.numpy()),
    }
    loads = {}
    for name, path, scope in [
        ("in_under_strategy", inside, True),
        ("out_under_strategy", outside, True),
        ("in_plain", inside, False),
    ]:
        if scope:
            with strategy.scope():
                loaded = tf.keras.models.load_model(path)
        else:
            loaded = tf.keras.models.load_model(path)
        loads[name] = {
            "mirrored": hasattr(loaded.buffer.storage, "values"),
            "energy_max_diff": float(
                np.abs(loaded.energy(probe).numpy() - expected["energy"]).max()
            ),
            "buffer_equal": bool(
                np.array_equal(loaded.buffer.storage.numpy(), expected["buffer"])
            ),
            "iterations": int(loaded.optimizer.iterations.numpy()),
        }
        if name == "in_under_strategy":  # training goes on from the loaded state
            loaded.fit(x, batch_size=BATCH, epochs=1, verbose=0)
            loads[name]["iterations_after_fit"] = int(
                loaded.optimizer.iterations.numpy()
            )
    result["loads"] = loads
    result["expected_iterations"] = expected["iterations"]

    # 4. chains that do not move write back what they drew, except restarts from
    # the prior: a wrong pairing of gathered slots and states would move them all
    model.sampler.step_size.assign(1e-30)  # x + 1e-15 ξ rounds to x in float32
    before = model.buffer.storage.numpy()
    model.fit(x, batch_size=BATCH, epochs=1, verbose=0)
    result["static_chains"] = {
        "drawn": len(x),
        "changed": int(np.sum(np.any(model.buffer.storage.numpy() != before, 1))),
        "reinit_prob": model.buffer.reinit_prob,
    }

    # 5. a non-finite step is skipped by every replica, and training stops
    kept = model.trainable_weights + [model.buffer.storage]
    kept += model.optimizer.variables  # (deel-lip's power vectors do move)
    good = [v.numpy() for v in kept]
    model.sampler.step_size.assign(np.inf)  # chains blow up at the next step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = model.fit(x, batch_size=BATCH, epochs=2, verbose=0)
    result["non_finite"] = {
        "stop_reason": model.stop_reason,
        "epochs_run": len(hist.history["loss"]),
        "changed": [
            v.name
            for v, g in zip(kept, good)
            if not all(np.array_equal(c, g) for c in _copies(v))
        ],
        "unchanged": all(
            np.array_equal(c, g) for v, g in zip(kept, good) for c in _copies(v)
        ),
    }

    # 6. a configuration the shards cannot serve is refused before training (the
    # messages are unit-tested in test_distribute.py)
    result["errors"] = {
        "empty_replica": _error(
            lambda: model.fit(x[: BATCH + 1], batch_size=BATCH, verbose=0)
        ),
    }
    result["same_step"] = _same_step(strategy, x[:BATCH])
    result["compare"] = _compare(strategy, seeds=(0,))

    # 7. proposal negatives: each replica draws its own, nothing goes to the buffer
    with strategy.scope():
        prop = _model(proposal="auto", loss="ml", num_negatives=256)
    before = prop.buffer.storage.numpy()
    hist = prop.fit(x, batch_size=BATCH, epochs=2, verbose=0)
    result["proposal"] = {
        "history": hist.history,
        "fitted": bool(prop.proposal.is_fitted),
        "buffer_unchanged": bool(np.array_equal(prop.buffer.storage.numpy(), before)),
        "copies_equal": all(
            all(np.array_equal(c, cs[0]) for c in cs)
            for cs in map(_copies, prop.trainable_variables)
        ),
    }
    return result


def _same_step(strategy, x):
    """One SGD step on one device and on two replicas, from the same state.

    The buffer holds exactly one batch and the chains do not move: both runs
    use the whole buffer as negatives, so the step must be the same.
    """
    models, logs = [], []
    for replicas in (1, 2):
        kwargs = dict(
            capacity=len(x), reinit_prob=0.0, step_size=1e-30, jit_compile=False
        )
        if replicas == 1:
            model = _model(optimizer=tf.keras.optimizers.SGD(0.1), **kwargs)
        else:
            with strategy.scope():
                model = _model(optimizer=tf.keras.optimizers.SGD(0.1), **kwargs)
            model.set_weights(models[0].get_weights())
            model.refresh_constraints()
        models.append(model)
    start = [w.numpy() for w in models[0].trainable_weights]
    for model in models:
        hist = model.fit(x, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        logs.append({k: v[-1] for k, v in hist.history.items()})
    moves = [
        [(w.numpy() - w0) for w, w0 in zip(m.trainable_weights, start)] for m in models
    ]
    return {
        "logs": logs,
        "max_move": max(float(np.abs(d).max()) for d in moves[0]),
        "max_move_diff": max(
            float(np.abs(a - b).max()) for a, b in zip(moves[0], moves[1])
        ),
    }


# ------------------------------------------------------------------ compare
def _exact(model):
    exact = metrics.exact_metrics_2d(model.energy, "8gaussians")
    return {"kl": float(exact["kl"]), "log_z": float(exact["log_z"])}


def compare(out_dir):
    strategy = tf.distribute.MirroredStrategy(_two_logical_cpus())
    seeds = [int(v) for v in os.environ.get("COMPARE_SEEDS", "0,1,2").split(",")]
    return _compare(strategy, seeds)


def _compare(strategy, seeds):
    """Train on one device and on two replicas, same global batch and seeds."""
    x = _mixture(4096)
    settings = {"steps": 10, "k": 10.0, "lr": 3e-3, "capacity": 4096}
    epochs, batch = 8, 256
    runs = {}
    for seed in seeds:
        for replicas in (1, 2):
            tf.keras.utils.set_random_seed(seed)
            if replicas == 1:
                model = _model(seed=seed, **settings)
            else:
                with strategy.scope():
                    model = _model(seed=seed, **settings)
            t0 = time.perf_counter()
            hist = model.fit(x, batch_size=batch, epochs=epochs, verbose=0)
            seconds = time.perf_counter() - t0
            gap = float(np.mean(hist.history["energy_gap"][-2:]))
            runs[f"{replicas}x_seed{seed}"] = {
                "replicas": replicas,
                "seconds": seconds,
                "energy_gap": gap,
                **_exact(model),
            }
    return {"runs": runs, "epochs": epochs, "batch": batch, **settings}


# ------------------------------------------------------------------ worker
class _Interrupt(tf.keras.callbacks.Callback):
    """Stops ``fit`` at the start of ``epoch`` (after the previous one's backup)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupted(f"interrupted at epoch {epoch}")


class _Interrupted(RuntimeError):
    pass


def _chief_path(out_dir):
    return os.path.join(out_dir, "model.keras")


def _state(model):
    """Weights (with deel-lip's cached kernels and power vectors), buffer."""
    arrays = {f"weight{i}": w.numpy() for i, w in enumerate(model.weights)}
    arrays["buffer"] = model.buffer.storage.numpy()
    return arrays


def worker(out_dir):
    """One of two workers: train with backups, save, resume from the backup.

    1. Train 2 epochs with ``BackupAndRestore``; every worker stops at the start
       of epoch 1 (the backup of epoch 0 is written), then the same model goes
       on in memory: its end state is the reference.
    2. Save as TensorFlow's multi-worker tutorial does: every worker calls
       ``save`` (reading the metrics' ``ON_READ`` variables is a collective op);
       the chief writes the real path, the others a temporary path they delete.
    3. A new model, initialised differently, resumes from the backup and must
       end where the reference ended.
    """
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = strategy.cluster_resolver.task_id
    chief = strategy.extended.should_checkpoint  # the chief, or worker 0 if none
    x = _mixture(512)
    fit = dict(batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    backup_dir = os.path.join(out_dir, "backup")

    # 1. interrupted after epoch 0's backup; the model goes on in memory
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        model = _model()
    backup = tf.keras.callbacks.BackupAndRestore(backup_dir)
    try:
        model.fit(x, callbacks=[backup, _Interrupt(epoch=1)], **fit)
        raise AssertionError("the interruption did not happen")
    except _Interrupted:
        pass
    interrupted_at = int(model.optimizer.iterations.numpy())
    # Keras leaves the interrupted fit's training state on the model; the next
    # fit would read its epoch counter (1) as the last backed-up epoch and skip
    # epoch 1. A restarted process has no such leftover.
    model._training_state = None
    hist = model.fit(x, initial_epoch=1, **fit)
    reference = _state(model)
    np.savez(os.path.join(out_dir, f"worker{index}.npz"), **reference)

    # 2. every worker saves; only the chief's file stays
    path = _chief_path(out_dir)
    if not chief:
        path = os.path.join(out_dir, f"workertemp_{index}", "model.keras")
        tf.io.gfile.makedirs(os.path.dirname(path))
    model.save(path)
    if not chief:
        tf.io.gfile.rmtree(os.path.dirname(path))
    energy = model.energy(_probe()).numpy()

    # 3. a new model resumes from the backup of epoch 0
    tf.keras.utils.set_random_seed(1)  # other initial weights and power vectors
    with strategy.scope():
        resumed = _model()
    backup = tf.keras.callbacks.BackupAndRestore(backup_dir)
    resumed_hist = resumed.fit(x, callbacks=[backup], **fit)
    resumed_state = _state(resumed)
    mismatched = [
        k for k in reference if not np.array_equal(reference[k], resumed_state[k])
    ]
    pairs = list(zip(model.optimizer.variables, resumed.optimizer.variables))
    optimizer_equal = len(pairs) == len(model.optimizer.variables) and all(
        np.array_equal(a.numpy(), b.numpy()) for a, b in pairs
    )
    return {
        "replicas": strategy.num_replicas_in_sync,
        "chief": chief,
        "history": hist.history,
        "iterations": int(model.optimizer.iterations.numpy()),
        "interrupted_at": interrupted_at,
        "energy": energy.tolist(),
        "resume": {
            "epochs_run": len(resumed_hist.history["loss"]),
            "iterations": int(resumed.optimizer.iterations.numpy()),
            "mismatched": mismatched,
            "optimizer_equal": optimizer_equal,
            "backup_left": tf.io.gfile.exists(backup_dir)
            and bool(tf.io.gfile.listdir(backup_dir)),
        },
    }


def load_worker_save(out_dir):
    """A fresh process, no strategy: load the chief's file and compare."""
    model = tf.keras.models.load_model(_chief_path(out_dir))
    held = np.load(os.path.join(out_dir, "worker0.npz"))
    loaded = _state(model)  # before energy(), which refreshes the cached kernels
    with open(os.path.join(out_dir, "worker0.json")) as f:
        energy = np.asarray(json.load(f)["energy"], np.float32)
    return {
        "mirrored": hasattr(model.buffer.storage, "values"),
        "keys_equal": sorted(loaded) == sorted(held.files),
        "mismatched": [
            k for k in held.files if not np.array_equal(held[k], loaded.get(k))
        ],
        "iterations": int(model.optimizer.iterations.numpy()),
        "energy_max_diff": float(np.abs(model.energy(_probe()).numpy() - energy).max()),
        "temp_dirs": sorted(
            d for d in os.listdir(out_dir) if d.startswith("workertemp")
        ),
    }


# --------------------------------------------------------------------- joint
def _small_joint_model(strategy, dim, **kwargs):
    """A compiled 2-class JointEnergyModel on ``dim``-dimensional points, built
    under ``strategy``."""
    import deel_ebm

    with strategy.scope():
        net = deel_ebm.nets.lipschitz_classifier((dim,), 2, units=(16, 16))
        model = deel_ebm.JointEnergyModel(
            net,
            k_coef_lip=5.0,
            weight_average=None,
            sampler=deel_ebm.LangevinSampler(
                num_steps=5, step_size=0.02, jit_compile=False
            ),
            buffer=deel_ebm.ReplayBuffer(capacity=CAPACITY, domain=(-3.0, 3.0)),
            **kwargs,
        )
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    return model


def joint(out_dir):
    """A JointEnergyModel fitted under a MirroredStrategy, saved and reloaded."""
    strategy = tf.distribute.MirroredStrategy(_two_logical_cpus())
    rng = np.random.default_rng(0)
    centres = np.array([[-1.5, 0.0], [1.5, 0.0]], np.float32)
    y = rng.integers(0, 2, 512)
    x = (centres[y] + 0.3 * rng.standard_normal((512, 2))).astype(np.float32)
    tf.keras.utils.set_random_seed(0)
    model = _small_joint_model(strategy, 2, proposal=None)
    hist = model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0)
    path = os.path.join(out_dir, "joint.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    probe = _probe()
    # in 9 dimensions: a fitted base, and chains started from it (base_starts=1)
    y9 = rng.integers(0, 2, 512)
    x9 = 1.5 * (2.0 * y9[:, None] - 1.0) + 0.3 * rng.standard_normal((512, 9))
    x9 = np.clip(x9, -2.9, 2.9).astype(np.float32)
    model9 = _small_joint_model(strategy, 9)
    hist9 = model9.fit(x9, y9, batch_size=BATCH, epochs=3, verbose=0)
    return {
        "history": hist.history,
        "accuracy": float(np.mean(model.predict(x, verbose=0).argmax(1) == y)),
        "replicas": strategy.num_replicas_in_sync,
        "load_error": float(
            np.max(np.abs(loaded.predict_proba(probe) - model.predict_proba(probe)))
        ),
        "base_starts": model9.base_starts,
        "base_fitted": bool(model9.base.is_fitted),
        "history_base": hist9.history,
        "accuracy_base": float(np.mean(model9.predict(x9, verbose=0).argmax(1) == y9)),
    }


if __name__ == "__main__":
    scenario, out_dir = sys.argv[1], sys.argv[2]
    scenarios = {
        "joint": joint,
        "mirrored": mirrored,
        "compare": compare,
        "worker": worker,
        "load_worker_save": load_worker_save,
    }
    result = scenarios[scenario](out_dir)
    name = scenario
    if scenario == "worker":
        name += str(json.loads(os.environ["TF_CONFIG"])["task"]["index"])
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(result, f, default=float)
