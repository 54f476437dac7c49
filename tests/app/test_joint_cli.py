"""`deel-ebm train --model joint` (issue 12): a JointEnergyModel run folder on
digits or a user's labelled .npy, evaluate, class-conditional `sample --class`,
and a one-line error for every bad input."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from deel_ebm import certificates
from deel_ebm.app import cli, folders, runs
from deel_ebm.core import classifier_losses
from deel_ebm.core import joint as joint_lib

#: a joint digits run in a few seconds: 2 optimizer steps, 2-step chains
TINY = ["--epochs", "1", "--n-train", "256", "--n-test", "128", "--batch-size"]
TINY += ["128", "--buffer-size", "512", "--num-steps", "2", "--quiet"]


def _run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    """A finished tiny joint digits run (module-wide, read only)."""
    out = tmp_path_factory.mktemp("joint") / "run"
    argv = ["train", "--dataset", "digits", "--model", "joint", "--out", str(out)]
    assert cli.main(argv + TINY) == 0
    return out


def _blobs(tmp_path, n=300, seed=0):
    """Three labelled 2D blobs saved as x.npy / y.npy; the label is the blob."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5]], np.float32)
    y = rng.integers(0, 3, n)
    x = centres[y] + 0.25 * rng.standard_normal((n, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "x.npy", tmp_path / "y.npy", x, y


# ------------------------------------------------------------------ train
@pytest.mark.slow
def test_a_joint_run_folder_records_the_model_and_its_classifier(joint_run):
    names = {p.name for p in joint_run.iterdir()}
    assert set(folders.RUN_FILES) | {"class_samples.png", "samples.png"} <= names
    config = json.loads((joint_run / "config.json").read_text())
    assert config["model"] == "joint" and config["labels"] is None
    assert config["generative_weight"] is None  # as asked: the library's default
    metrics = json.loads((joint_run / "metrics.json").read_text())
    resolved = metrics["resolved_config"]
    assert resolved["num_classes"] == 10 and resolved["net"] == "conv"
    assert resolved["generative_weight"] == joint_lib.DEFAULT_GENERATIVE_WEIGHT
    cls = metrics["classification"]
    assert cls["num_classes"] == 10 and cls["ece_bins"] == 15 and cls["certified"]
    assert 0 <= cls["test_accuracy"] <= 1 and 0 <= cls["test_ece"] <= 1
    radii = [f"{r:g}" for r in certificates.DEFAULT_ROBUST_RADII]
    robust = cls["certified_accuracy"]
    assert list(robust) == radii
    values = [cls["test_accuracy"], *robust.values()]
    assert values == sorted(values, reverse=True)  # fewer points at larger radii
    assert cls["margin_factor"] == pytest.approx(np.sqrt(2))
    assert {"ce", "accuracy", "val_ce", "val_accuracy"} <= set(metrics["final_logs"])


def test_the_summary_prints_the_classifier(tmp_path, capsys):
    metrics = {
        "steps_run": 5,
        "train_seconds": 3.0,
        "k_coef_lip": 64.0,
        "resolved_config": {"negatives": "chains"},
        "classification": {
            "test_accuracy": 0.9,
            "test_ece": 0.05,
            "ece_bins": 15,
            "certified_accuracy": {"0.1": 0.5, "0.25": 0.2, "0.5": 0.0},
        },
    }
    text = cli._summary(metrics)
    assert "test accuracy 0.900, ECE 0.050 (15 bins)" in text
    assert "certified accuracy 0.500 / 0.200 / 0.000 at l2 radius 0.1 / 0.25 / 0.5" in (
        text
    )


@pytest.mark.slow
def test_every_classification_key_is_documented(joint_run):
    page = (Path(__file__).parents[2] / "docs" / "run-folder.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", page, flags=re.M))
    metrics = json.loads((joint_run / "metrics.json").read_text())
    keys = {f"classification.{k}" for k in metrics["classification"]}
    keys.add("classification")
    assert keys <= documented, keys - documented
    for name in (p.name for p in joint_run.iterdir()):
        assert f"`{name}`" in page, name
    for field in (
        "model",
        "labels",
        "num_classes",
        "generative_weight",
        "classifier_loss",
    ):
        assert f"`{field}`" in page, field


@pytest.mark.slow
def test_resume_and_overwrite_keep_the_joint_recipe(joint_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(joint_run, run)
    first = json.loads((run / "metrics.json").read_text())
    code, _, err = _run(
        ["train", "--dataset", "digits", "--model", "joint", "--out", str(run)],
        capsys,
    )
    assert code == 2 and "already holds a finished run" in err
    code, out, err = _run(["train", "--out", str(run), "--resume"], capsys)
    assert code == 0, err
    assert "test accuracy" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 * first["epochs_run"]
    assert metrics["resumed"] == 1 and metrics["classification"]["num_classes"] == 10
    assert metrics["resolved_config"]["model"] == "joint"
    code, _, err = _run(
        ["train", "--out", str(run), "--resume", "--generative-weight", "0.5"], capsys
    )
    assert code == 2 and "--generative-weight" in err and err.count("\n") == 1


@pytest.mark.slow
def test_train_on_a_labelled_npy(tmp_path, capsys):
    x_path, y_path, _, _ = _blobs(tmp_path)
    out = tmp_path / "run"
    argv = ["train", "--model", "joint", "--dataset", str(x_path), "--labels"]
    argv += [str(y_path), "--out", str(out), "--epochs", "2", "--units", "16", "16"]
    argv += ["--num-negatives", "256", "--batch-size", "128", "--quiet"]
    argv += ["--generative-weight", "0.1"]
    code, out_text, err = _run(argv, capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    resolved = metrics["resolved_config"]
    assert resolved["num_classes"] == 3 and resolved["generative_weight"] == 0.1
    assert resolved["negatives"] == "proposal" and resolved["net"] == "dense"
    assert (out / "class_samples.png").stat().st_size > 0  # one colour per class
    assert metrics["classification"]["num_classes"] == 3
    config = json.loads((out / "config.json").read_text())
    assert config["labels"] == str(y_path)


def test_labels_follow_their_rows_through_the_split(tmp_path):
    x_path, y_path, _, _ = _blobs(tmp_path)
    config = runs.RunConfig(
        dataset=str(x_path), model="joint", labels=str(y_path), seed=3
    )
    data = runs.load_labeled_data(config)
    centres = np.array([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5]])
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        nearest = np.argmin(np.linalg.norm(x[:, None] - centres, axis=2), axis=1)
        assert np.mean(nearest == y) > 0.99
    assert data.num_classes == 3 and len(data.y_test) == 30
    x_train, x_test, _ = runs.load_data(config)  # the energy view: the same split
    np.testing.assert_array_equal(x_train, data.x_train)
    np.testing.assert_array_equal(x_test, data.x_test)


# ---------------------------------------------------------------- evaluate
@pytest.mark.slow
def test_evaluate_adds_the_classifier_columns(joint_run, tmp_path, capsys):
    table_path, md_path = tmp_path / "t.json", tmp_path / "t.md"
    argv = ["evaluate", "--model", str(joint_run), "--json", str(table_path)]
    code, out, err = _run([*argv, "--markdown", str(md_path)], capsys)
    assert code == 0, err
    row = json.loads(table_path.read_text())["deel-ebm"]
    for key in ("accuracy", "ece", "class_agreement"):
        assert 0 <= row[key] <= 1, key
    for r in certificates.DEFAULT_ROBUST_RADII:
        assert row[f"certified_accuracy_{r:g}"] <= row["accuracy"]
    assert "expected calibration error" in out and "cert acc@0.1" in out
    markdown = md_path.read_text()
    assert "- **ECE**: joint model: expected calibration error" in markdown
    assert "- **class agr**:" in markdown


# ------------------------------------------------------------------ sample
@pytest.mark.slow
def test_sample_one_class_all_classes_or_the_marginal(joint_run, tmp_path, capsys):
    base = ["sample", "--model", str(joint_run), "--num-steps", "2"]
    code, out, err = _run(
        [*base, "-n", "12", "--class", "3", "--out", str(tmp_path / "c3.npy")], capsys
    )
    assert code == 0, err
    assert "of class 3" in out and np.load(tmp_path / "c3.npy").shape == (12, 8, 8, 1)
    assert not (tmp_path / "c3_labels.npy").exists()
    code, out, err = _run([*base, "-n", "25", "--out", str(tmp_path / "a.npy")], capsys)
    assert code == 0, err  # a joint model's default: every class
    labels = np.load(tmp_path / "a_labels.npy")
    assert labels.tolist() == sorted(np.arange(25) % 10)
    assert np.load(tmp_path / "a.npy").shape == (25, 8, 8, 1)
    code, _, err = _run([*base, "-n", "30", "--out", str(tmp_path / "all.png")], capsys)
    assert code == 0 and (tmp_path / "all.png").stat().st_size > 0, err
    code, out, err = _run(
        [*base, "-n", "8", "--class", "marginal", "--out", str(tmp_path / "m.npy")],
        capsys,
    )
    assert code == 0 and "of class" not in out and "classes" not in out, err
    assert not (tmp_path / "m_labels.npy").exists()


def test_class_figure_has_one_row_per_class():
    from deel_ebm.app.figures import class_samples_figure

    x = np.zeros((30, 8, 8, 1), np.float32)
    y = runs.class_sample_labels(30, 3)
    fig = class_samples_figure(x, y, (-1.0, 1.0), per_class=4, title="t")
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (3 * 9 + 1, 4 * 9 + 1)  # 3 rows of 4 tiles, 1 px padding
    assert [t.get_text() for t in fig.axes[0].texts] == ["0", "1", "2"]
    assert fig.axes[0].get_title() == "t"
    one = cli._sample_figure(x[:12], np.full(12, 3), "class 3", "run")
    assert one.axes[0].get_title() == "run: samples of class 3 (12 of 12 shown)"
    many = np.zeros((60, 8, 8, 1), np.float32)
    every = cli._sample_figure(
        many, runs.class_sample_labels(60, 3), "classes 0-2", "run"
    )
    assert "one row per class (the first 10 of each)" in every.axes[0].get_title()
    points = np.random.default_rng(0).normal(size=(30, 2))
    scatter = class_samples_figure(points, y, title="2D")
    labels = [t.get_text() for t in scatter.axes[0].get_legend().get_texts()]
    assert labels == ["class 0 (10)", "class 1 (10)", "class 2 (10)"]


@pytest.mark.slow
def test_sample_class_errors(joint_run, tmp_path, capsys):
    out = str(tmp_path / "s.npy")
    code, _, err = _run(
        ["sample", "--model", str(joint_run), "--class", "10", "--out", out], capsys
    )
    assert code == 2 and "--class must lie in 0..9 (the model's 10 classes)" in err
    assert err.count("\n") == 1 and not (tmp_path / "s.npy").exists()
    energy = tmp_path / "energy.keras"
    config = runs.RunConfig(units=(8, 8), buffer_size=64)
    runs.build_model(config, (2,), (-1.0, 1.0)).save(energy)
    code, _, err = _run(
        ["sample", "--model", str(energy), "--class", "1", "--out", out], capsys
    )
    assert code == 2 and "holds an energy model" in err and err.count("\n") == 1
    assert cli.main(["sample", "--model", str(energy), "-n", "4", "--num-steps", "1",
                     "--class", "marginal", "--out", out]) == 0  # fmt: skip


@pytest.mark.parametrize("value", ["-1", "three", "1.5"])
def test_bad_class_values_give_one_line(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sample", "--model", "r", "--out", "s.npy", "--class", value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "--class" in err


# -------------------------------------------------------------- bad input
def _labelled(tmp_path, y, n=120):
    x = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(y))
    return ["--dataset", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]


@pytest.mark.parametrize(
    "extra, labels, needle",
    [
        (["--dataset", "8gaussians"], None, "8gaussians has no class labels"),
        (["--dataset", "digits", "--labels", "y.npy"], None, "digits has its own"),
        (["--dataset", "digits", "--num-classes", "5"], None,
         "labels must lie in 0..4 (num_classes 5), got 9"),
        (["--dataset", "digits", "--num-classes", "1"], None,
         "num_classes must be at least 2"),
        (["--dataset", "digits", "--generative-weight", "-1"], None,
         "generative_weight must be >= 0"),
        (["--dataset", "digits", "--generative-weight", "nan"], None,
         "generative_weight must be a finite number"),
        (["--dataset", "digits", "--net", "dense"], None, "drop --net dense"),
        (["--dataset", "digits", "--activation", "fullsort"], None,
         "drop --activation"),
        ([], [0, 1] * 60, None),  # the labelled .npy below, without --labels
        ([], [0, 1] * 59, "has 118 labels for the 120 rows"),
        ([], [0, 1, -1] * 40, "(negative)"),
        ([], [0.5, 1.0] * 60, "not integers"),
        ([], [[0, 1]] * 120, "expected (n,) integer class labels"),
        ([], [0] * 120, "holds one class (0)"),
        (["--num-classes", "2"], [0, 1, 2] * 40, "labels must lie in 0..1"),
    ],
)  # fmt: skip
def test_bad_joint_inputs_give_one_line(extra, labels, needle, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "joint", "--out", str(out), *extra]
    if labels is not None:
        argv += _labelled(tmp_path, labels)
    if needle is None:  # the .npy without its labels
        argv = [a for a in argv if a != "--labels" and not a.endswith("y.npy")]
        needle = "add --labels y.npy"
    code, _, err = _run(argv, capsys)
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--labels", "y.npy"], "--labels is an option of a joint model"),
        (["--num-classes", "3"], "--num-classes is an option of a joint model"),
        (["--generative-weight", "0.1"], "--generative-weight is an option"),
        (["--classifier-loss", "hkr"], "--classifier-loss is an option"),
    ],
)
def test_joint_options_need_the_joint_model(extra, needle, tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--out", str(tmp_path / "r"), *extra]
    code, _, err = _run(argv, capsys)
    assert code == 2 and needle in err and "add --model joint" in err, err


def test_bad_model_name_gives_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--dataset", "digits", "--out", "r", "--model", "jem"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid choice: 'jem'" in err


# ------------------------------------------------------------- the recipe
def test_the_joint_recipe_reads_the_library_defaults():
    images = runs.RunConfig(model="joint").resolved((8, 8, 1))
    assert images.net == "conv" and images.activation == "groupsort2"
    assert images.generative_weight == joint_lib.DEFAULT_GENERATIVE_WEIGHT
    flat = runs.RunConfig(model="joint", generative_weight=0.0).resolved((2,))
    assert flat.net == "dense" and flat.generative_weight == 0.0
    energy = runs.RunConfig().resolved((8, 8, 1))
    assert energy.net == "dense" and energy.generative_weight is None
    config = dataclasses.replace(images, num_classes=10)
    model = runs.build_model(config, (8, 8, 1), (-1.0, 1.0))
    assert isinstance(model, joint_lib.JointEnergyModel) and model.num_classes == 10
    assert model.generative_weight == joint_lib.DEFAULT_GENERATIVE_WEIGHT
    default = joint_lib.DEFAULT_CLASSIFIER_LOSS
    assert images.classifier_loss == default and energy.classifier_loss is None
    assert type(model.classifier_loss) is type(classifier_losses.get(default))
    hkr = dataclasses.replace(images, num_classes=10, classifier_loss="hkr")
    model = runs.build_model(hkr, (8, 8, 1), (-1.0, 1.0))
    assert isinstance(model.classifier_loss, classifier_losses.MulticlassHKRLoss)
    with pytest.raises(ValueError, match="needs num_classes"):
        runs.build_model(images, (8, 8, 1), (-1.0, 1.0))
    # a run folder written before the joint fields existed still loads
    old = {k: v for k, v in runs.RunConfig().to_json().items()}
    for key in (
        "model",
        "labels",
        "num_classes",
        "generative_weight",
        "classifier_loss",
    ):
        old.pop(key)
    old["net"] = "dense"
    assert runs.RunConfig.from_json(old).model == "energy"


def test_a_bad_classifier_loss_gets_one_line(capsys):
    with pytest.raises(ValueError, match="classifier_loss must be one of"):
        runs.RunConfig(model="joint", classifier_loss="xent").validate()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--model", "joint", "--classifier-loss", "xent"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid choice: 'xent'" in err


def test_help_shows_the_joint_options_and_the_library_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--model {energy,joint}", "--labels Y.npy", "--num-classes"):
        assert option in text, option
    weight = f"{joint_lib.DEFAULT_GENERATIVE_WEIGHT:g}"
    assert f"(default: auto: {weight}, the library's" in text
    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--class C|all|marginal" in text and "(default: all for a joint" in text
