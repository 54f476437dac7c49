"""The speed benchmarks on one device (a CUDA GPU when there is one), in one run.

Runs ``bench_train_step.py`` (chain step, train step, matrix-product rate, where a
train step goes) on the dense 3x256 energy with 2D and 64D inputs and on the
digits conv energy, pinned to the chosen device, and optionally the PyTorch peer
(``benchmarks/peer/bench_peer.py``, same configs) on the matching torch device.
The JSON records what ran where: TensorFlow's device and its details (GPU name,
compute capability), the CPU model and core count, the versions.

    python benchmarks/bench_device.py --device auto --json device.json
    python benchmarks/bench_device.py --device gpu --batch 4096 \\
        --peer-python /work/peer-venv/bin/python --json gpu.json

``--device gpu`` fails with one line when TensorFlow sees no GPU (it never falls
back to the CPU silently); ``auto`` takes the first GPU, else the CPU, and says
which. Ratios, not absolute times, are what compares across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

import bench_train_step as bts  # noqa: E402

import deel_ebm  # noqa: E402,F401  (first: it selects the Keras 2 API)

# isort: split
import tensorflow as tf  # noqa: E402

#: name -> bench_train_step arguments (the configs of docs/benchmarks.md)
CONFIGS = {
    "dense_2d": ["--net", "dense", "--dim", "2"],
    "dense_64d": ["--net", "dense", "--dim", "64"],
    "conv_digits": ["--net", "conv"],
}
#: bench_train_step config -> the peer's config of the same energy
PEER_CONFIGS = {
    "dense_2d": "dense2d",
    "dense_64d": "dense64d",
    "conv_digits": "digits_conv",
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_device(choice: str) -> tuple[str, dict]:
    """``(tf device string, description)`` for ``auto``, ``cpu`` or ``gpu``."""
    gpus = tf.config.list_physical_devices("GPU")
    if choice == "gpu" and not gpus:
        raise SystemExit(
            "bench_device: --device gpu, but TensorFlow sees no GPU "
            "(tf.config.list_physical_devices('GPU') is empty)"
        )
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "built_with_cuda": tf.test.is_built_with_cuda(),
        "gpus_visible": [g.name for g in gpus],
    }
    if choice != "cpu" and gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info.update(
            kind="gpu",
            gpu_name=details.get("device_name"),
            compute_capability=details.get("compute_capability"),
        )
        return "/GPU:0", info
    info["kind"] = "cpu"
    return "/CPU:0", info


def run_peer(python, names, args, device_kind):
    """The peer's numbers for ``names``, on CUDA when the device is a GPU."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [python, str(HERE / "peer" / "bench_peer.py")]
        cmd += ["--configs", *[PEER_CONFIGS[n] for n in names]]
        cmd += ["--batch", str(args.batch), "--steps", str(args.steps)]
        cmd += ["--repeats", str(args.repeats), "--inner", str(args.inner)]
        cmd += ["--device", "cuda" if device_kind == "gpu" else "cpu"]
        cmd += ["--json", str(out)]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument(
        "--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS)
    )
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--inner", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peer-python", default=None, help="the peer's Python (optional)")
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args(argv)
    for name in ("batch", "steps", "inner", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.peer_python and not Path(args.peer_python).exists():
        p.error(f"--peer-python: no such file {args.peer_python}")
    device, info = resolve_device(args.device)
    print(f"bench_device: running on {device} ({info.get('gpu_name') or info['cpu']})")
    res = {"device": info, "configs": {}}
    common = ["--batch", str(args.batch), "--steps", str(args.steps)]
    common += ["--inner", str(args.inner), "--repeats", str(args.repeats)]
    common += ["--no-xla-check", "--twins", "groupsort2", "swish"]
    for name in args.configs:
        with tf.device(device):
            res["configs"][name] = bts.main(CONFIGS[name] + common)
    if args.peer_python:
        res["peer"] = run_peer(args.peer_python, args.configs, args, info["kind"])
        for name in args.configs:
            peer = res["peer"]["configs"][PEER_CONFIGS[name]]
            ours = res["configs"][name]
            res["configs"][name]["throughput_vs_peer"] = (
                ours["chain_samples_per_s"] / (peer["sample_steps_per_s"]["lipschitz"])
            )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
