"""`deel-ebm train --dataset digits` and `deel-ebm sample` give digits by
default (samples from the model's fitted base, refined by its chains)."""

import numpy as np
import pytest

from deel_ebm import datasets, metrics
from deel_ebm.app import cli


@pytest.mark.slow
def test_train_digits_writes_digit_samples(tmp_path):
    # `deel-ebm train --dataset digits` with the defaults but 2 epochs (10 steps,
    # about 5 s): samples.npy is graded like the benchmark's. Measured FD 1.7.
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--out", str(out), "--epochs", "2"]
    assert cli.main(argv) == 0
    x = np.load(out / "samples.npy")
    x_test = datasets.load_digits(seed=0).x_test
    assert metrics.frechet_distance(x, x_test) < 5.0
    x_cli = tmp_path / "more.npy"
    argv = ["sample", "--model", str(out), "-n", "300", "--out", str(x_cli)]
    assert cli.main(argv) == 0
    assert metrics.frechet_distance(np.load(x_cli), x_test) < 5.0
