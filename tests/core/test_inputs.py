"""In-memory arrays are fed to ``fit`` without being copied or put in the graph."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from deel_ebm import datasets
from deel_ebm._backend import tf
from deel_ebm.core import inputs

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
    ds, _, _ = inputs.arrays_as_dataset(big, None, 256, 0, counter, kwargs)
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
    ds = inputs.resumable_dataset(x, 8, False, 0, counter)
    x[:] = 1.0  # written after the dataset was built: a copy would not see it
    np.testing.assert_array_equal(next(iter(ds)).numpy(), np.ones((8, 2)))


def test_large_as_dataset_stays_out_of_the_graph(big, monkeypatch):
    monkeypatch.setattr(datasets.loaders, "MAX_INLINE_BYTES", big.nbytes - 1)
    ds = datasets.as_dataset(big, 512, shuffle=True, seed=0, y=np.arange(len(big)))
    assert _graph_bytes(ds) < 64 << 10
    bx, by = next(iter(ds))
    np.testing.assert_array_equal(bx.numpy(), big[by.numpy()])  # pairs kept


def _bench_input_memory():
    """``benchmarks/bench_input_memory.py``, source of the guide's figures."""
    path = Path(__file__).parents[2] / "benchmarks" / "bench_input_memory.py"
    spec = importlib.util.spec_from_file_location("bench_input_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_fit_on_a_large_array_does_not_copy_it():
    """Peak memory of ``fit`` on a 512 MiB array stays far below one copy of it.

    Keras' own array pipeline costs two whole copies; the index pipeline costs
    the epoch's permutation and a few batches (``benchmarks/bench_input_memory.py``
    on a 488 MiB array: +976 MiB against +54 MiB). The bound, a quarter of the
    array, leaves room for allocator noise.
    """
    row = _bench_input_memory().measure(1 << 21, "deel_ebm")
    assert row["array_mib"] == 512
    assert row["fit_peak_above_mib"] < 512 / 4, row
