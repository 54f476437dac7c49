"""Training under tf.distribute: shards, global metrics, save/load, multi-worker.

Two replicas need two devices, configured before TensorFlow initialises them: the
strategy tests run ``distribute_scenarios.py`` in fresh processes (two logical
CPUs, or two worker processes on loopback ports) and check what it reports.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deel_ebm
from deel_ebm._backend import tf
from deel_ebm.core import _distribute

SCRIPT = Path(__file__).with_name("distribute_scenarios.py")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
TIMEOUT = 300


def _scenario(name, out_dir):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), name, str(out_dir)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads((out_dir / f"{name}.json").read_text())


# ------------------------------------------------------------ no device needed
def test_buffer_shards_hold_the_draws_of_their_replica():
    buffer = deel_ebm.ReplayBuffer(capacity=12)
    buffer.build((None, 2))
    assert buffer.shard_capacity(3) == 4
    for index in range(3):
        _, slots = buffer.draw(4, [0, 1], shard=(tf.constant(index), 3))
        assert sorted(slots.numpy().tolist()) == list(range(4 * index, 4 * index + 4))
    with pytest.raises(ValueError, match="cannot be split into 5 equal shards"):
        buffer.draw(2, [0, 1], shard=(0, 5))
    with pytest.raises(ValueError, match="per shard"):
        buffer.draw(5, [0, 1], shard=(0, 3))


def test_without_a_strategy_nothing_changes():
    buffer = deel_ebm.ReplayBuffer(capacity=50)
    buffer.build((None, 2))
    assert _distribute.replica_shard() is None
    seed = tf.constant([3, 4], tf.int64)
    assert _distribute.replica_seed(seed) is seed
    loss = tf.constant(2.0)
    assert _distribute.scale_loss(loss) is loss


@pytest.mark.parametrize(
    "batch, capacity, replicas, n, match",
    [
        (128, 999, 2, None, "cannot be split into 2 equal shards"),
        (128, 1000, 2, 129, "last batch of 1 samples"),
    ],
)
def test_configurations_the_shards_cannot_serve_are_named(
    batch, capacity, replicas, n, match
):
    with pytest.raises(ValueError, match=match):
        _distribute.check_batch_size(batch, capacity, replicas, n=n)
    _distribute.check_batch_size(batch, capacity, 1, n=n)  # one device: fine


# ------------------------------------------------------------ MirroredStrategy
@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    return _scenario("mirrored", tmp_path_factory.mktemp("mirrored"))


@pytest.mark.slow
def test_fit_under_mirrored_strategy(mirrored):
    assert mirrored["replicas"] == 2
    history = mirrored["fit_history"]
    for key in ("loss", "energy_gap", "e_pos", "e_neg", "grad_norm"):
        assert len(history[key]) == 2 and np.isfinite(history[key]).all()
    assert mirrored["step"]["iterations"] == 1
    assert mirrored["step"]["copies_equal"]  # weights and optimizer, per device
    assert mirrored["buffer_copies_equal"]


@pytest.mark.slow
def test_each_replica_draws_from_and_writes_to_its_own_shard(mirrored):
    step = mirrored["step"]
    # global batch 128: 64 chains per replica, each in its half of the buffer
    assert step["changed_per_shard"] == [64, 64]
    assert step["slots_0"] != step["slots_1"]  # the replicas' seeds differ
    # chains that do not move write back what they drew, but for the 5 % that
    # restart from the prior: slots and states of every replica stay paired when
    # gathered (a mismatch would change about all 512 rows drawn)
    static = mirrored["static_chains"]
    assert 0 < static["changed"] <= 3 * static["reinit_prob"] * static["drawn"]


@pytest.mark.slow
def test_logged_metrics_are_global_means(mirrored):
    step = mirrored["step"]
    logs = step["history"]
    # the replicas' halves of the batch have different energies: the log is the
    # mean over the global batch, not one replica's
    assert abs(step["e_pos_replica0"] - step["e_pos_replica1"]) > 0.5
    np.testing.assert_allclose(logs["e_pos"], step["e_pos_global"], rtol=1e-4)
    np.testing.assert_allclose(step["batch_logs"][0]["e_pos"], logs["e_pos"])
    np.testing.assert_allclose(
        logs["energy_gap"], logs["e_neg"] - logs["e_pos"], rtol=1e-4, atol=1e-5
    )
    evaluate = mirrored["evaluate"]
    np.testing.assert_allclose(
        evaluate["logs"]["e_pos"], evaluate["e_pos_global"], rtol=1e-4, atol=1e-5
    )


@pytest.mark.slow
def test_save_and_load_under_a_strategy_round_trip(mirrored):
    loads = mirrored["loads"]
    assert loads["in_under_strategy"]["mirrored"]
    assert loads["out_under_strategy"]["mirrored"]
    assert not loads["in_plain"]["mirrored"]
    for name, load in loads.items():
        assert load["energy_max_diff"] < 1e-5, name
        assert load["buffer_equal"], name
        assert load["iterations"] == mirrored["expected_iterations"], name
    after = loads["in_under_strategy"]["iterations_after_fit"]
    assert after == mirrored["expected_iterations"] + 4


@pytest.mark.slow
def test_a_non_finite_step_is_skipped_by_every_replica(mirrored):
    non_finite = mirrored["non_finite"]
    assert "non-finite" in non_finite["stop_reason"]
    assert non_finite["epochs_run"] == 1
    # weights, optimizer state and step counter, buffer: on every device
    assert non_finite["unchanged"]


@pytest.mark.slow
def test_unservable_configurations_are_refused_before_training(mirrored):
    errors = mirrored["errors"]
    assert "leaves a replica without samples" in errors["empty_replica"]


@pytest.mark.slow
def test_proposal_negatives_under_a_strategy(mirrored):
    result = mirrored["proposal"]
    assert result["fitted"] and result["buffer_unchanged"] and result["copies_equal"]
    assert all(np.isfinite(result["history"]["loss"]))
    assert all(0 < e <= 1 for e in result["history"]["ess"])


# ------------------------------------------------------------ 1 vs 2 replicas
@pytest.mark.slow
def test_two_replicas_take_the_step_of_one_device_on_the_global_batch(mirrored):
    # static chains and a buffer of one batch: both runs see the same negatives;
    # SGD (not Adam) so that a wrong gradient scale would show
    same = mirrored["same_step"]
    one, two = same["logs"]
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6)
    assert same["max_move"] > 0.1
    assert same["max_move_diff"] < 1e-4 * same["max_move"]


@pytest.mark.slow
def test_two_replicas_match_one_device_statistically(mirrored):
    # 8gaussians, 128 steps of global batch 256, seed 0. Over seeds 0-2 the
    # exact KL was 0.74 / 0.61 / 0.50 on one device and 0.56 / 0.69 / 0.69 on
    # two replicas, the gap 1.14 / 1.19 / 1.29 and 1.17 / 1.15 / 1.17. Other
    # batches (Keras' array pipeline, which fit used under a strategy before
    # the host-memory one) gave two replicas KL 0.57 / 0.71 / 1.03: a paired
    # difference of 0.53 nats. So the tolerances cannot be much tighter: they
    # say "same regime", no more. Power, measured on seed 0: an untrained
    # model (KL 9.7, gap -2.6) fails every clause;
    # faults of the distributed step stay within the spread at this budget
    # (end points not written back: KL 0.64, gap 1.38; both replicas on one
    # seed: 0.67, 1.14; every chain from the prior: 0.87, 1.16). The exact
    # tests above catch the first two (shards and pairing; the replicas' slots).
    runs = mirrored["compare"]["runs"]
    one, two = runs["1x_seed0"], runs["2x_seed0"]
    assert abs(two["kl"] - one["kl"]) < 0.6, (one, two)
    assert max(one["kl"], two["kl"]) < 1.5, (one, two)
    assert abs(two["energy_gap"] - one["energy_gap"]) < 0.3, (one, two)


# ------------------------------------------------------------ multi-worker
def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Two loopback workers train, save and resume (``worker`` scenario)."""
    out_dir = tmp_path_factory.mktemp("workers")
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    workers = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        workers.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), "worker", str(out_dir)],
                env={**ENV, "TF_CONFIG": json.dumps(config)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        errors = [w.communicate(timeout=TIMEOUT)[1] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, err in zip(workers, errors):
        assert w.returncode == 0, err[-4000:]
    reports = [json.loads((out_dir / f"worker{i}.json").read_text()) for i in (0, 1)]
    return out_dir, reports


@pytest.mark.slow
def test_multi_worker_training_ends_with_identical_weights(workers):
    out_dir, reports = workers
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["chief"] for r in reports] == [True, False]
    assert reports[0]["iterations"] == reports[1]["iterations"] == 8
    assert np.isfinite(reports[0]["history"]["loss"]).all()
    states = [np.load(out_dir / f"worker{i}.npz") for i in (0, 1)]
    assert sorted(states[0].files) == sorted(states[1].files)
    for key in states[0].files:  # weights, cached kernels and the whole buffer
        np.testing.assert_array_equal(states[0][key], states[1][key], err_msg=key)
    np.testing.assert_array_equal(reports[0]["energy"], reports[1]["energy"])


@pytest.mark.slow
def test_multi_worker_save_loads_in_a_fresh_process_without_a_strategy(workers):
    # every worker called save: the chief wrote model.keras, worker 1 a file in
    # a temporary directory that it removed
    out_dir, _ = workers
    assert (out_dir / "model.keras").is_file()
    load = _scenario("load_worker_save", out_dir)
    assert load["temp_dirs"] == []
    assert not load["mirrored"]
    assert load["keys_equal"]
    assert load["mismatched"] == []  # weights, cached kernels, buffer: bit for bit
    assert load["iterations"] == 8
    assert load["energy_max_diff"] < 1e-5


@pytest.mark.slow
def test_multi_worker_backup_and_restore_resumes_exactly(workers):
    # interrupted after the backup of epoch 0, a new model (other initial
    # weights) resumes from it and ends where the interrupted model, which went
    # on in memory, ended: weights, cached kernels, buffer, optimizer
    _, reports = workers
    for report in reports:
        assert report["interrupted_at"] == 4
        resume = report["resume"]
        assert resume["epochs_run"] == 1  # epoch 1 only: epoch 0 was restored
        assert resume["iterations"] == 8
        assert resume["mismatched"] == []
        assert resume["optimizer_equal"]
        assert not resume["backup_left"]  # Keras removes it after a finished fit


@pytest.mark.slow
def test_a_joint_model_trains_under_a_strategy(tmp_path):
    result = _scenario("joint", tmp_path)
    assert result["replicas"] == 2
    for key in ("loss", "ce", "accuracy", "energy_gap"):
        assert np.all(np.isfinite(result["history"][key])), key
    assert result["history"]["ce"][-1] < result["history"]["ce"][0]
    assert result["accuracy"] >= 0.9
    assert result["load_error"] < 1e-5
    # chains started from the fitted base run under the strategy too
    assert result["base_starts"] == 1.0 and result["base_fitted"]
    assert np.all(np.isfinite(result["history_base"]["loss"]))
    assert result["accuracy_base"] >= 0.9
