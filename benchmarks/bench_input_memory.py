"""Peak memory of ``EnergyModel.fit`` on a large in-memory array.

Each measurement runs in a fresh interpreter: a small 64-D Lipschitz model is
trained once on a tiny array (so every function is traced and compiled), then
``fit`` runs three steps and a validation pass on an ``n x 64`` float32 array.
The peak resident memory of that ``fit`` (Linux ``VmHWM``, reset just before it)
is reported above the resident memory before it, against the array's size, for
deel-ebm's pipeline and for Keras' own array pipeline (forced by passing a
``sample_weight``, which deel-ebm leaves to Keras).

    python benchmarks/bench_input_memory.py --samples 2000000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import os, sys, warnings
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import deel_ebm
keras = deel_ebm.keras

n, pipeline = int(sys.argv[1]), sys.argv[2]

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

def weights(m):
    return {"sample_weight": np.ones(m, np.float32)} if pipeline == "keras" else {}

small = np.zeros((256, 64), np.float32)
model.fit(small, batch_size=128, verbose=0, validation_split=0.5, **weights(256))
x = np.random.default_rng(0).uniform(-1, 1, (n, 64)).astype(np.float32)
kw = weights(n)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
model.fit(x, batch_size=128, verbose=0, validation_split=0.02,
          callbacks=[StopAfter3()], **kw)
print(x.nbytes, before, status("VmHWM"))
"""


def measure(n, pipeline):
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), pipeline],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    nbytes, before, peak = map(int, out.stdout.split()[-3:])
    return {
        "pipeline": pipeline,
        "array_mib": nbytes / 2**20,
        "rss_before_mib": before / 2**20,
        "fit_peak_above_mib": (peak - before) / 2**20,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    rows = [measure(args.samples, p) for p in ("deel_ebm", "keras")]
    for row in rows:
        print(
            f"{row['pipeline']:9} array {row['array_mib']:7.1f} MiB  "
            f"fit peak +{row['fit_peak_above_mib']:7.1f} MiB"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(sys.argv), "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
