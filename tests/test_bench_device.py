"""The device benchmark (issue 14): it records the device it ran on, refuses a
GPU it does not have, and runs the same benchmarks as bench_train_step."""

import json

import pytest
import tensorflow as tf

from benchmarks import bench_device


@pytest.mark.skipif(
    bool(tf.config.list_physical_devices("GPU")), reason="a GPU is present"
)
def test_gpu_request_without_a_gpu_is_a_one_line_error():
    with pytest.raises(SystemExit, match="TensorFlow sees no GPU"):
        bench_device.main(["--device", "gpu"])


@pytest.mark.slow
def test_cpu_run_records_the_device_and_the_ratios(tmp_path):
    out = tmp_path / "device.json"
    argv = ["--device", "cpu", "--configs", "dense_2d", "--batch", "32"]
    argv += ["--steps", "3", "--inner", "1", "--repeats", "1", "--json", str(out)]
    bench_device.main(argv)
    res = json.loads(out.read_text())
    assert res["device"]["kind"] == "cpu" and res["device"]["cpu_count"] >= 1
    row = res["configs"]["dense_2d"]
    assert row["chain_step_ms"]["lipschitz"] > 0 and row["matmul_gflops"] > 0
    assert row["train_ratio_vs_swish"] > 0 and 0 < row["chain_efficiency"]
