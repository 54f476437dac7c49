"""The command line as a new user meets it (issue 13): run folders that never
lose work, one-line errors for every bad option, progress that says why
training stopped, and no TensorFlow start-up noise."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deel_ebm.app import cli, folders, runs

TINY = [
    "--epochs",
    "2",
    "--n-train",
    "512",
    "--n-test",
    "256",
    "--batch-size",
    "256",
    "--units",
    "16",
    "16",
    "--num-negatives",
    "256",
    "--quiet",
]


def _run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _train(out, capsys, *extra, dataset="8gaussians"):
    return _run(
        ["train", "--dataset", dataset, "--out", str(out), *TINY, *extra], capsys
    )


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run (module-wide, read only)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["train", "--dataset", "8gaussians", "--out", str(out), *TINY]) == 0
    return out


# ------------------------------------------------------------- run folders
def test_a_finished_run_is_never_replaced_unasked(finished, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name, data in _snapshot(finished).items():
        (run / name).write_bytes(data)
    before = _snapshot(run)
    code, _, err = _train(run, capsys)
    assert code == 2 and "already holds a finished run" in err and "--overwrite" in err
    assert err.count("\n") == 1
    assert _snapshot(run) == before and not _leftovers(tmp_path)


@pytest.mark.slow
def test_overwrite_replaces_and_a_failure_keeps_the_old_run(
    finished, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    run.mkdir()
    for name, data in _snapshot(finished).items():
        (run / name).write_bytes(data)
    before = _snapshot(run)

    def broken(*args, **kwargs):
        raise ValueError("figures failed")

    monkeypatch.setattr(runs.figures, "write_run_figures", broken)
    code, _, err = _train(run, capsys, "--overwrite", "--seed", "3")
    assert code == 2 and "figures failed" in err
    assert _snapshot(run) == before and not _leftovers(tmp_path)  # untouched
    monkeypatch.undo()
    code, _, _ = _train(run, capsys, "--overwrite", "--seed", "3")
    assert code == 0 and not _leftovers(tmp_path)
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 3  # the new run, complete
    assert set(folders.RUN_FILES) <= set(_snapshot(run))


def test_a_rejected_command_leaves_no_folder(tmp_path, capsys):
    for argv in (
        ["train", "--dataset", "nope", "--out", str(tmp_path / "a")],
        ["train", "--dataset", "rings", "--out", str(tmp_path / "b"), "--lr", "inf"],
        ["train", "--dataset", "rings", "--out", str(tmp_path / "c"), "--n-train", "1"],
        ["train", "--out", str(tmp_path / "d")],
    ):
        code, _, err = _run(argv, capsys)
        assert code == 2 and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_resume_continues_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, capsys)[0] == 0
    first = json.loads((run / "metrics.json").read_text())
    code, out, _ = _run(
        ["train", "--out", str(run), "--resume", "--epochs", "3"], capsys
    )
    assert code == 0, out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == first["epochs_run"] + 3
    assert metrics["steps_run"] == first["steps_run"] + 3 * 2  # 512 / 256 per epoch
    assert metrics["resumed"] == 1
    rows = folders.read_history(run / "history.csv")
    assert [r["epoch"] for r in rows] == list(range(1, metrics["epochs_run"] + 1))
    assert [r["step"] for r in rows] == [2 * e for e in range(1, len(rows) + 1)]
    elapsed = [r["elapsed_seconds"] for r in rows]
    assert elapsed == sorted(elapsed)
    code, _, err = _run(["train", "--out", str(run), "--resume", "--k", "3"], capsys)
    assert code == 2 and "--k" in err and "--resume" in err
    code, _, err = _run(["train", "--out", str(tmp_path / "x"), "--resume"], capsys)
    assert code == 2 and "no finished run" in err


@pytest.mark.slow
def test_ctrl_c_saves_a_consistent_resumable_run(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "deel_ebm", "train", "--dataset", "rings"]
    argv += ["--out", str(run), "--epochs", "100000", "--n-train", "2048"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    lines = []
    for line in proc.stdout:  # the first progress line: training has started
        lines.append(line)
        if line.startswith("step "):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    text = "".join(lines) + out
    assert proc.returncode == 0, err
    assert "interrupted (Ctrl-C)" in text
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stop_reason"] == "interrupted"
    assert set(folders.RUN_FILES) <= {p.name for p in run.iterdir()}
    assert not _leftovers(tmp_path)
    assert cli.main(["train", "--out", str(run), "--resume", "--epochs", "1"]) == 0


# ------------------------------------------------------------- options
TRAIN_R = ["train", "--dataset", "rings", "--out", "r"]
SCORE_R = ["score", "--model", "r", "--input", "x.npy", "--out", "e.npy"]
SAMPLE_R = ["sample", "--model", "r", "--out", "s.npy"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        ([*TRAIN_R, "--ema-momentum", "1"], "(0, 1)"),
        ([*SCORE_R, "--epsilon", "-1"], "radius"),
        ([*SAMPLE_R, "--num-steps", "-3"], "at least 1"),
        ([*SAMPLE_R, "--num-steps", "0"], "at least 1"),
        ([*SAMPLE_R, "-n", "0"], "at least 1"),
        (["demo", "--max-minutes", "0"], "positive"),
    ],
)  # fmt: skip
def test_bad_options_give_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and needle in err and "usage:" not in err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--lr", "inf"], "learning_rate must be a finite number"),
        (["--n-train", "1"], "n_train must be at least 100"),
        (["--step-size", "nan"], "step_size must be"),
        (["--domain", "1", "0"], "domain must be"),
        (["--max-minutes", "-1"], "max_minutes must be positive"),
    ],
)
def test_bad_recipes_give_one_line(extra, needle, tmp_path, capsys):
    code, _, err = _run(
        ["train", "--dataset", "rings", "--out", str(tmp_path / "r"), *extra], capsys
    )
    assert code == 2 and err.count("\n") == 1 and needle in err, err


def test_every_option_has_help_and_a_default(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest in ("help",):
                continue
            assert action.help, f"{name} {action.option_strings} has no help"
            shown = "default" in action.help or "required" in action.help
            assert shown, f"{name} {action.option_strings}: {action.help!r}"


@pytest.mark.slow
def test_outputs_and_inputs_are_checked_before_the_work(finished, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((5, 2), "float32"))
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    bad_out = str(blocker / "e.npy")
    code, _, err = _run(
        ["score", "--model", str(finished), "--input", str(x), "--out", bad_out],
        capsys,
    )
    assert code == 2 and "not a writable folder" in err and err.count("\n") == 1
    code, out, _ = _run(
        ["score", "--model", str(finished / "model.keras"), "--input", str(x),
         "--out", str(tmp_path / "e.npy"), "--epsilon", "0.1"],
        capsys,
    )  # fmt: skip
    assert code == 0 and "certified at radius 0.1" in out  # a .keras in a run folder
    alone = tmp_path / "m.keras"
    alone.write_bytes((finished / "model.keras").read_bytes())
    code, out, _ = _run(
        ["score", "--model", str(alone), "--input", str(x),
         "--out", str(tmp_path / "e2.npy")],
        capsys,
    )  # fmt: skip
    assert code == 0 and "no calibrated threshold" in out
    code, out, _ = _run(
        ["sample", "--model", str(alone), "-n", "50", "--num-steps", "5", "--mala",
         "--out", str(tmp_path / "s.npy")],
        capsys,
    )  # fmt: skip
    assert code == 0 and "MALA acceptance rate" in out


# ------------------------------------------------------------- what it says
@pytest.mark.slow
def test_progress_shows_steps_budget_and_why_it_stopped(tmp_path, capsys):
    config = runs.RunConfig(
        dataset="8gaussians",
        n_train=2048,
        n_test=256,
        units=(16, 16),
        num_negatives=256,
        epochs=100000,
        max_minutes=0.05,
    )
    lines = []
    metrics = runs.train_run(config, tmp_path / "r", log=lines.append, progress_every=0)
    # the first line comes at step 2, or at step 1 when the first step (tracing
    # and compilation) alone outlasts the 3 s budget on a loaded machine
    assert re.match(r"step [12]/200000 \[", lines[0]) and "s budget]" in lines[0]
    assert "the time budget of 0.05 min was spent" in lines[-1]
    assert metrics["stopped_by_time_budget"] and "budget" in metrics["outcome"]
    rows = folders.read_history(tmp_path / "r" / "history.csv")
    assert {"epoch", "step", "elapsed_seconds", "loss"} <= set(rows[0])
    assert rows[-1]["step"] == metrics["steps_run"]


@pytest.mark.slow
def test_history_holds_validation_curves(finished):
    rows = folders.read_history(finished / "history.csv")
    assert any("val_loss" in r for r in rows) and all("loss" in r for r in rows)


def test_badly_scaled_data_get_a_warning(tmp_path):
    big = np.random.default_rng(0).normal(size=(500, 2)) * 1e6
    assert "far from unit scale" in runs.scale_warning(big)
    assert runs.scale_warning(big / 1e6) is None
    assert "far from unit scale" in runs.scale_warning(big / 1e11)
    assert "far from unit scale" in runs.scale_warning(big / 1e6 + 1e4)


@pytest.mark.slow
def test_digits_config_records_the_real_split_sizes(tmp_path, capsys):
    out = tmp_path / "d"
    argv = ["train", "--dataset", "digits", "--out", str(out), "--epochs", "1"]
    argv += ["--units", "16", "16", "--num-steps", "2", "--quiet"]
    assert cli.main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    resolved = json.loads((out / "metrics.json").read_text())["resolved_config"]
    assert config["n_train"] is None  # as asked: the whole split
    assert (resolved["n_train"], resolved["n_test"]) == (1257, 540)


@pytest.mark.slow
def test_the_command_hides_tensorflow_start_up_noise(finished, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((5, 2), "float32"))
    argv = [sys.executable, "-m", "deel_ebm", "sample", "--model", str(finished)]
    argv += ["-n", "20", "--out", str(tmp_path / "s.npy")]
    quiet = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    loud = subprocess.run(
        [*argv, "--tf-log"], capture_output=True, text=True, env=env, timeout=300
    )
    assert loud.returncode == 0 and ".cc:" in loud.stderr  # TensorFlow's own lines


def test_native_noise_filter_keeps_real_messages():
    from deel_ebm.app._native_log import is_noise

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR",
        "I0000 00:00:1796245473.674820    6085 device_compiler.h:196] Compiled "
        "cluster using XLA!  This line is logged at most once for the lifetime",
        "W0000 00:00:1796245473.674820    6085 gpu_device.cc:2341] Cannot dlopen",
        "2026-12-02 23:09:44.229958: E external/local_xla/xla/stream_executor/cuda/"
        "cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: Failed "
        "call to cuInit: UNKNOWN ERROR (303)",
        "2026-12-02 21:04:06.602898: I external/local_xla/xla/tsl/cuda/"
        "cudart_stub.cc:31] Could not find cuda drivers on your machine",
    ]
    kept = [
        "deel-ebm train: error: n_train must be at least 100, got 1",
        "Traceback (most recent call last):",
        "E0000 00:00:1796245473.674820 6085 some_op.cc:12] a real failure",
        "RuntimeWarning: EnergyModel: non-finite loss at epoch 3",
    ]
    assert all(is_noise(line) for line in noise)
    assert not any(is_noise(line) for line in kept)


def test_fit_warns_on_badly_scaled_data():
    from conftest import small_model

    model = small_model(steps=2, capacity=256)
    big = np.random.default_rng(0).normal(size=(256, 2)).astype("float32") * 1e6
    with pytest.warns(UserWarning, match="far from unit scale"):
        model.fit(big, batch_size=128, epochs=1, verbose=0)


@pytest.mark.slow
def test_train_logs_to_tensorboard(tmp_path, capsys):
    from pathlib import Path as _Path

    from deel_ebm._backend import tf

    log_dir = tmp_path / "tb"
    code, _, err = _train(tmp_path / "r", capsys, "--tensorboard", str(log_dir))
    assert code == 0, err
    tags = set()
    for path in _Path(log_dir).rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {v.tag for v in event.summary.value}
    assert {"epoch_energy_gap", "epoch_lip_upper", "samples"} <= tags, tags


def _documented_keys(page: str) -> set:
    import re

    return set(re.findall(r"^\| `([a-z_.]+)` \|", page, flags=re.M))


@pytest.mark.slow
def test_every_metrics_key_is_documented(finished, tmp_path, capsys):
    page = (Path(__file__).parents[2] / "docs" / "run-folder.md").read_text()
    documented = _documented_keys(page)
    metrics = json.loads((finished / "metrics.json").read_text())
    keys = {k for k in metrics}
    keys |= {f"exact.{k}" for k in metrics.get("exact", {})}
    assert keys <= documented, keys - documented
    for name in (p.name for p in finished.iterdir()):
        assert f"`{name}`" in page, name
    from deel_ebm.app.evaluation import COLUMNS

    assert all(f"`{key}`" in page for key, _, _ in COLUMNS)
