"""The joint-model benchmark's smoke budget: every row and metric is written."""

import json

import numpy as np
import pytest

from benchmarks import bench_joint


@pytest.mark.slow
def test_smoke_budget_writes_every_model_and_metric(tmp_path):
    out, picture = tmp_path / "joint.json", tmp_path / "samples.png"
    bench_joint.main(
        ["--seeds", "1", "--epochs", "1", "--weights", "0.5", "--no-variants"]
        + ["--out", str(out)]
        + ["--picture", str(picture)]
    )
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert set(runs) == {
        "lip-joint",
        "jem",
        "lip-joint-w0.5",
        "lip-ce",
        "lip-hkr",
        "logreg",
        "svc",
    }
    assert runs["lip-joint-w0.5"][0]["generative_weight"] == 0.5
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
    assert result["over_seeds"].keys() == {"lip-joint", "jem"}
    assert runs["jem"][0]["classifier_loss"] == "CrossEntropyLoss"
    assert runs["lip-joint"][0]["base_starts"] == 1.0
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


def test_the_seed_summary_takes_the_better_score_and_skips_diverged_runs():
    def row(accuracy, ece, mixture, diverged=False):
        ood = {"mixture": {"energy": mixture[0], "max_prob": mixture[1]}}
        return {"accuracy": accuracy, "ece": ece, "ood": ood, "diverged": diverged}

    rows = [row(0.9, 0.02, (0.96, 0.90)), row(0.8, 0.04, (0.85, 0.93))]
    summary = bench_joint.over_seeds(rows + [row(0.1, 0.5, (0.1, 0.1), True)])
    assert summary["accuracy"] == {"mean": pytest.approx(0.85), "worst": 0.8}
    assert summary["ece"] == {"mean": pytest.approx(0.03), "worst": 0.04}
    assert summary["ood_mixture"] == {"mean": pytest.approx(0.945), "worst": 0.93}
    assert "certified" not in summary
    assert bench_joint.over_seeds([row(0.1, 0.5, (0.1, 0.1), True)]) == {}
