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
  by the test); saves its final weights and buffer.
"""

import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from conftest import small_model  # noqa: E402  (tests/ is this script's dir)

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
    probe = np.random.default_rng(1).uniform(-3, 3, (500, 2)).astype("float32")
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
def worker(out_dir):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        model = _model()
    x = _mixture(512)
    hist = model.fit(x, batch_size=BATCH, epochs=2, verbose=0)
    arrays = {f"weight{i}": w.numpy() for i, w in enumerate(model.weights)}
    arrays["buffer"] = model.buffer.storage.numpy()
    np.savez(os.path.join(out_dir, f"worker{index}.npz"), **arrays)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "history": hist.history,
        "iterations": int(model.optimizer.iterations.numpy()),
    }


if __name__ == "__main__":
    scenario, out_dir = sys.argv[1], sys.argv[2]
    result = {"mirrored": mirrored, "compare": compare, "worker": worker}[scenario](
        out_dir
    )
    name = scenario
    if scenario == "worker":
        name += str(json.loads(os.environ["TF_CONFIG"])["task"]["index"])
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(result, f, default=float)
