"""The deel-ebm command end to end on a tiny budget, and its errors."""

import json

import numpy as np
import pytest

from deel_ebm.app import cli

TINY = [
    "--epochs",
    "1",
    "--n-train",
    "512",
    "--batch-size",
    "128",
    "--units",
    "16",
    "16",
    "--num-steps",
    "5",
    "--buffer-size",
    "512",
    "--quiet",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--dataset", "8gaussians", "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.slow
def test_train_writes_a_complete_run_folder(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "config.json",
        "metrics.json",
        "model.keras",
        "history.csv",
        "landscape.png",
        "samples.png",
        "curves.png",
    } <= names
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps_run"] == 4
    assert metrics["exact"]["kl"] > 0 and np.isfinite(metrics["threshold"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["k_coef_lip"] is None and config["units"] == [16, 16]  # as asked
    resolved = metrics["resolved_config"]  # and as trained: a learned k in 2D
    assert resolved["learn_k"] and resolved["k_coef_lip"] == 20.0
    assert resolved["negatives"] == "proposal"
    assert resolved["activation"] == "fullsort,groupsort8"
    assert 0 < metrics["k_coef_lip"] <= resolved["k_max"] == 80.0


@pytest.mark.slow
def test_sample_and_score(run_dir, tmp_path, capsys):
    out = tmp_path / "s.npy"
    assert (
        cli.main(
            [
                "sample",
                "--model",
                str(run_dir),
                "-n",
                "50",
                "--out",
                str(out),
                "--num-steps",
                "3",
            ]
        )
        == 0
    )
    x = np.load(out)
    assert x.shape == (50, 2)
    assert (
        cli.main(
            [
                "sample",
                "--model",
                str(run_dir),
                "-n",
                "20",
                "--out",
                str(tmp_path / "s.png"),
                "--mala",
            ]
        )
        == 0
    )
    assert (tmp_path / "s.png").stat().st_size > 0
    e_out = tmp_path / "e.npy"
    assert (
        cli.main(
            ["score", "--model", str(run_dir), "--input", str(out), "--out", str(e_out)]
        )
        == 0
    )
    assert np.load(e_out).shape == (50,)
    assert np.load(tmp_path / "e_radius.npy").shape == (50,)
    assert "threshold" in capsys.readouterr().out


@pytest.mark.slow
def test_train_on_a_user_array(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(300, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(tmp_path / "x.npy"), "--out", str(out), *TINY]
    code, err = _error(argv, capsys)  # TINY asks for 512 training points
    assert code == 2 and "270 training points; n_train asks for 512" in err
    assert not out.exists()
    argv[argv.index("--n-train") + 1] = "200"
    assert cli.main(argv) == 0
    assert (out / "model.keras").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resolved_config"]["n_train"] == 200
    assert metrics["resolved_config"]["n_test"] == 30


def _error(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


def test_bad_dataset_name(tmp_path, capsys):
    code, err = _error(
        ["train", "--dataset", "9gaussians", "--out", str(tmp_path)], capsys
    )
    assert code == 2 and "unknown dataset '9gaussians'" in err


def test_missing_and_malformed_files(tmp_path, capsys):
    code, err = _error(
        ["train", "--dataset", str(tmp_path / "no.npy"), "--out", str(tmp_path)], capsys
    )
    assert code == 2 and "no such file" in err
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    code, err = _error(["train", "--dataset", str(bad), "--out", str(tmp_path)], capsys)
    assert code == 2 and "bad.npy" in err
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, err = _error(
        ["train", "--dataset", str(pickled), "--out", str(tmp_path)], capsys
    )
    assert code == 2 and "not a plain numeric" in err


def test_not_a_run_folder(tmp_path, capsys):
    code, err = _error(
        [
            "sample",
            "--model",
            str(tmp_path),
            "-n",
            "5",
            "--out",
            str(tmp_path / "x.npy"),
        ],
        capsys,
    )
    assert code == 2 and "not a deel-ebm run folder" in err


@pytest.mark.slow
def test_shape_mismatch_in_score(run_dir, tmp_path, capsys):
    np.save(tmp_path / "x3.npy", np.zeros((10, 3), "float32"))
    code, err = _error(
        [
            "score",
            "--model",
            str(run_dir),
            "--input",
            str(tmp_path / "x3.npy"),
            "--out",
            str(tmp_path / "e.npy"),
        ],
        capsys,
    )
    assert code == 2 and "must have samples of shape (2,), got (3,)" in err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--dataset",
        "--epochs",
        "--k",
        "--step-size",
        "--num-steps",
        "--max-minutes",
        "--unconstrained",
    ):
        assert option in text


@pytest.mark.slow
def test_evaluate_prints_a_table_beside_baselines(run_dir, tmp_path, capsys):
    out = tmp_path / "table.json"
    assert cli.main(["evaluate", "--model", str(run_dir), "--json", str(out)]) == 0
    table = json.loads(out.read_text())
    assert {
        "deel-ebm",
        "GaussianMixture",
        "KernelDensity",
        "IsolationForest",
        "OneClassSVM",
    } <= set(table)
    assert table["GaussianMixture"]["kl"] < 0.05 < table["deel-ebm"]["kl"]
    for name, row in table.items():
        if name != "data itself":
            assert 0.0 <= row["auroc_uniform"] <= 1.0
    ebm = table["deel-ebm"]
    assert ebm["certified_auroc_uniform"] <= ebm["auroc_uniform"]
    reference = table["data itself"]  # what a perfect model scores
    assert reference["kl"] == 0.0 and reference["test_nll"] < ebm["test_nll"]
    out = capsys.readouterr().out
    assert "GaussianMixture" in out and "cert@0.1: " in out and "ε = 0.1" in out
    markdown = (run_dir / "evaluation.md").read_text()  # the run's own copy
    assert "| deel-ebm |" in markdown and "- **KL**: exact KL" in markdown
    assert not (run_dir / "evaluation.json").exists()  # --json put it elsewhere


def test_ema_momentum_option(tmp_path, capsys):
    parser = cli.build_parser()
    base = ["train", "--dataset", "8gaussians", "--out", str(tmp_path)]
    assert cli._config_from_args(parser.parse_args(base)).ema_momentum == 0.995
    args = parser.parse_args([*base, "--ema-momentum", "none"])
    assert cli._config_from_args(args).ema_momentum is None
    args = parser.parse_args([*base, "--ema-momentum", "0.99"])
    assert cli._config_from_args(args).ema_momentum == 0.99
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*base, "--ema-momentum", "1.5"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--ema-momentum" in err and "(0, 1)" in err


def test_run_config_rejects_bad_ema_momentum():
    from deel_ebm.app.runs import RunConfig

    for bad in (0.0, 1.0, -0.5, "0.9"):
        with pytest.raises(ValueError, match="ema_momentum"):
            RunConfig(ema_momentum=bad).validate()


def test_damaged_model_in_a_run_folder_is_refused(run_dir, tmp_path, capsys):
    damaged = tmp_path / "run"
    damaged.mkdir()
    for name in ("config.json", "metrics.json"):
        (damaged / name).write_bytes((run_dir / name).read_bytes())
    model = (run_dir / "model.keras").read_bytes()
    (damaged / "model.keras").write_bytes(model[: len(model) // 2])  # truncated
    code, err = _error(
        [
            "sample",
            "--model",
            str(damaged),
            "-n",
            "5",
            "--out",
            str(tmp_path / "x.npy"),
        ],
        capsys,
    )
    assert code == 2 and "cannot load" in err and "model.keras" in err
    assert not (tmp_path / "x.npy").exists()
