"""In-memory arrays are fed to ``fit`` without being copied or put in the graph."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deel_ebm import datasets, persistence
from deel_ebm._backend import tf

_IGNORE_EXTERNAL_STATE = 1  # DatasetToGraphV2's external_state_policy


def _graph_bytes(ds):
    """Size of the serialised dataset graph (what a strategy's rewrite copies)."""
    graph = tf.raw_ops.DatasetToGraphV2(
        input_dataset=ds._variant_tensor,
        external_state_policy=_IGNORE_EXTERNAL_STATE,
    )
    return len(graph.numpy())


@pytest.fixture(scope="module")
def big():
    return np.random.default_rng(0).standard_normal((1 << 16, 32), dtype=np.float32)


def test_fit_pipeline_keeps_arrays_out_of_the_graph(big):
    counter = tf.Variable(0, dtype=tf.int64)
    kwargs = {"validation_split": 0.25}
    ds, _, _ = persistence.arrays_as_dataset(big, None, 256, 0, counter, kwargs)
    assert big.nbytes == 8 << 20
    for pipeline in (ds, kwargs["validation_data"]):
        assert _graph_bytes(pipeline) < 64 << 10  # indices only, not 8 MiB of data
    batch = next(iter(ds)).numpy()
    assert batch.shape == (256, 32)
    # each row is a row of the training part
    rows = {r.tobytes() for r in big[: 3 << 14]}
    assert all(r.tobytes() in rows for r in batch)


def test_fit_pipeline_reads_the_callers_array_not_a_copy():
    x = np.zeros((8, 2), np.float32)
    counter = tf.Variable(0, dtype=tf.int64)
    ds = persistence.resumable_dataset(x, 8, False, 0, counter)
    x[:] = 1.0  # written after the dataset was built: a copy would not see it
    np.testing.assert_array_equal(next(iter(ds)).numpy(), np.ones((8, 2)))


def test_large_as_dataset_stays_out_of_the_graph(big, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_INLINE_BYTES", big.nbytes - 1)
    ds = datasets.as_dataset(big, 512, shuffle=True, seed=0, y=np.arange(len(big)))
    assert _graph_bytes(ds) < 64 << 10
    bx, by = next(iter(ds))
    np.testing.assert_array_equal(bx.numpy(), big[by.numpy()])  # pairs kept


_FIT_PEAK = """
import os, warnings
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import deel_ebm
from deel_ebm._backend import keras

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = deel_ebm.EnergyModel(
        deel_ebm.nets.lipschitz_mlp((64,), units=(32, 32)), k_coef_lip=5.0,
        sampler=deel_ebm.LangevinSampler(num_steps=5, step_size=1e-2),
        buffer=deel_ebm.ReplayBuffer(capacity=1000, domain=(-3.0, 3.0)))
model.compile(optimizer=keras.optimizers.Adam(1e-3))

class StopAfter3(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.model.stop_training = batch >= 2

small = np.zeros((256, 64), np.float32)  # compile the train and test steps first
model.fit(small, batch_size=128, verbose=0, validation_split=0.5)
x = np.random.default_rng(0).uniform(-1, 1, ({n}, 64)).astype(np.float32)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
model.fit(x, batch_size=128, verbose=0, validation_split=0.02, callbacks=[StopAfter3()])
print(x.nbytes, status("VmHWM") - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_fit_on_a_large_array_does_not_copy_it():
    """Peak memory of ``fit`` on a 512 MiB array stays far below one copy of it.

    Keras' own array pipeline costs two whole copies; the index pipeline costs
    the epoch's permutation and a few batches (``benchmarks/bench_input_memory.py``
    on a 488 MiB array: +976 MiB against +54 MiB). The bound, a quarter of the
    array, leaves room for allocator noise.
    """
    script = textwrap.dedent(_FIT_PEAK).replace("{n}", str(1 << 21))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    nbytes, extra = map(int, out.stdout.split()[-2:])
    assert nbytes == 512 << 20
    assert extra < nbytes / 4, f"fit's peak rose by {extra / 2**20:.0f} MiB"
