"""The joint-model benchmark's smoke budget: every row and metric is written."""

import json

import numpy as np
import pytest

from benchmarks import bench_joint


@pytest.mark.slow
def test_smoke_budget_writes_every_model_and_metric(tmp_path):
    out, picture = tmp_path / "joint.json", tmp_path / "samples.png"
    bench_joint.main(
        ["--seeds", "1", "--epochs", "1", "--weights", "", "--out", str(out)]
        + ["--picture", str(picture)]
    )
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert set(runs) == {"lip-joint", "jem", "lip-ce", "lip-hkr", "logreg", "svc"}
    for name, rows in runs.items():
        row = rows[0]
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["ece"] <= 1.0, name
        ood = row["ood"]
        assert set(ood) == {"inverted", "uniform", "shuffled", "blurred", "mixture"}
    for name in ("lip-joint", "lip-ce", "lip-hkr"):  # certified <= attacked
        row = runs[name][0]
        for radius, certified in row["certified"].items():
            assert certified <= row["pgd"][radius] + 1e-9, (name, radius)
    assert "certified" not in runs["jem"][0]  # no certificate without the constraint
    assert set(runs["lip-joint"][0]["conditional_samples"]) == {"default", "from_noise"}
    assert picture.stat().st_size > 10_000
    assert result["diverged"].keys() == {"lip-joint", "jem"}
    tables = out.with_suffix(".md").read_text()
    assert "| lip-hkr |" in tables and "max p(y|x)" in tables


def test_the_benchmark_calibration_error_of_a_hand_example():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    # each point alone in its bin of width 1/15: |1 - 0.9|, |0 - 0.6| (wrong),
    # |1 - 0.8|, |1 - 0.7|
    expected = (0.1 + 0.2 + 0.3 + 0.6) / 4
    # the benchmark's ECE is the library's, 15 bins
    assert bench_joint.metrics.expected_calibration_error(
        probs, labels, bins=bench_joint.BINS
    ) == pytest.approx(expected)
