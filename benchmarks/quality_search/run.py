"""One quality-search run: train a RunConfig through ``runs.train_run``, append results.

    python benchmarks/quality_search/run.py --tag base '{"dataset": "8gaussians",
        "max_minutes": 1}' [--extra '{"sampler": "mala"}']

The config is a JSON object of RunConfig fields (unset fields keep the library
defaults). ``--extra`` measures *proposed* library changes without editing the
library, by patching the model that ``runs.build_model`` returns:

- ``sampler``: ``"mala"`` swaps the Langevin sampler for MALASampler (same
  step size, steps and annealing).
- ``data_reinit``: share in [0, 1] of the re-initialised chains that restart from
  a training point plus Gaussian noise of std ``data_reinit_std`` (default 0.1)
  instead of the uniform prior.

One JSON line per run goes to results.jsonl next to this script: the full config,
the extras, steps run, wall time, exact KL both ways, test NLL and mode masses.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import deel_ebm  # noqa: F401  (Keras-2 guard before TensorFlow)
from deel_ebm import runs
from deel_ebm._backend import tf
from deel_ebm.samplers import MALASampler

HERE = Path(__file__).resolve().parent


def patch_build(extra, x_train_ref):
    original = runs.build_model

    def build_model(config, sample_shape, domain):
        model = original(config, sample_shape, domain)
        if extra.get("sampler") == "mala":
            s = model.sampler
            model.sampler = MALASampler(
                num_steps=s.num_steps,
                step_size=float(s.step_size.numpy()),
                init_temperature=s.init_temperature,
                anneal_fraction=s.anneal_fraction,
                domain=s.domain,
            )
        share = float(extra.get("data_reinit", 0.0))
        if share > 0:
            buf = model.buffer
            data = tf.constant(x_train_ref[0], tf.float32)
            std = float(extra.get("data_reinit_std", 0.1))
            uniform = buf._prior_sample

            def prior(shape, seed):
                seeds = tf.random.experimental.stateless_split(
                    tf.cast(seed, tf.int64), num=4
                )
                n = shape[0]
                idx = tf.random.stateless_uniform(
                    [n], seeds[0], 0, data.shape[0], dtype=tf.int32
                )
                noisy = tf.gather(data, idx) + std * tf.random.stateless_normal(
                    shape, seeds[1]
                )
                pick = tf.random.stateless_uniform([n], seeds[2]) < share
                return tf.where(pick[:, None], noisy, uniform(shape, seeds[3]))

            if buf.storage is not None:
                raise RuntimeError("buffer already built")
            buf._prior_sample = prior  # the initial fill stays uniform only if built
        return model

    runs.build_model = build_model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config", help="JSON object of RunConfig fields")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--extra", default="{}")
    parser.add_argument("--out", default="/tmp/quality_search")
    parser.add_argument("--results", default=str(HERE / "results.jsonl"))
    args = parser.parse_args()
    config = runs.RunConfig.from_json(json.loads(args.config))
    extra = json.loads(args.extra)
    x_train, _, _ = runs.load_data(config)
    patch_build(extra, [x_train])
    load0 = os.getloadavg()[0]
    t0 = time.time()
    out = Path(args.out) / f"{args.tag}_{config.dataset}_{config.seed}"
    metrics = runs.train_run(config, out, verbose=0, log=lambda *_: None)
    exact = metrics["exact"]
    masses = exact.get("mode_masses")
    row = {
        "tag": args.tag,
        "dataset": config.dataset,
        "config": config.to_json(),
        "extra": extra,
        "steps_run": metrics["steps_run"],
        "train_seconds": round(metrics["train_seconds"], 1),
        "steps_per_s": round(metrics["steps_run"] / metrics["train_seconds"], 2),
        "wall_seconds": round(time.time() - t0, 1),
        "load_avg_start": round(load0, 2),
        "kl": exact["kl"],
        "reverse_kl": exact["reverse_kl"],
        "test_nll": exact["test_nll"],
        "data_test_nll": exact["data_test_nll"],
        "log_z": exact["log_z"],
        "mode_mass_min": None if masses is None else float(np.min(masses)),
        "mode_mass_max": None if masses is None else float(np.max(masses)),
        "mode_masses": masses,
        "data_mode_mass": None
        if masses is None
        else float(np.mean(exact["data_mode_masses"])),
        "final_logs": metrics["final_logs"],
        "stop_reason": metrics["stop_reason"],
        "out_dir": str(out),
    }
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    mm = (
        ""
        if masses is None
        else f" masses {row['mode_mass_min']:.3f}-{row['mode_mass_max']:.3f}"
    )
    print(
        f"{args.tag:28s} {config.dataset:12s} KL {row['kl']:.4f} rKL "
        f"{row['reverse_kl']:.4f} steps {row['steps_run']} "
        f"({row['steps_per_s']}/s) wall {row['wall_seconds']}s{mm}",
        flush=True,
    )


if __name__ == "__main__":
    main()
