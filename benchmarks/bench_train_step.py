"""Time a Langevin step and a PCD train step: Lipschitz energy vs. unconstrained twin.

Ratios are what counts (this machine's timings are noisy): both models are timed in
the same run, interleaved, and the median of several repeats is reported.

    python benchmarks/bench_train_step.py --batch 512 --units 256 256 256 --steps 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import deel_ebm
from deel_ebm._backend import tf


def build(kind, args):
    shape = (args.dim,)
    jit = "auto"
    if kind == "lipschitz_no_xla":  # the same chain without XLA: is XLA faster?
        kind, jit = "lipschitz", False
    if kind == "lipschitz":
        net = deel_ebm.nets.lipschitz_mlp(shape, units=args.units)
    else:
        net = deel_ebm.nets.unconstrained_mlp(shape, units=args.units, activation=kind)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = deel_ebm.EnergyModel(
            net,
            k_coef_lip=20.0,
            sampler=deel_ebm.LangevinSampler(
                num_steps=args.steps, step_size=5e-3, jit_compile=jit
            ),
            buffer=deel_ebm.ReplayBuffer(capacity=10_000, domain=(-4.5, 4.5)),
        )
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    return model


def time_chain(model, args):
    chain = model._chain(model.sampler)
    x0 = model.buffer.prior_sample(args.batch, [0, 1])
    chain(x0, tf.constant([0, 0], tf.int64))[0].numpy()  # compile
    t = time.perf_counter()
    for i in range(args.inner):
        chain(x0, tf.constant([0, i], tf.int64))[0].numpy()
    return (time.perf_counter() - t) / (args.inner * args.steps)


def time_train_step(model, args, data):
    fn = model.make_train_function()
    it = iter(data)
    fn(it)  # trace and compile
    t = time.perf_counter()
    for _ in range(args.inner):
        logs = fn(it)
    float(logs["loss"])
    return (time.perf_counter() - t) / args.inner


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--dim", type=int, default=2)
    p.add_argument("--units", type=int, nargs="+", default=[256, 256, 256])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--inner", type=int, default=5, help="calls per timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--twins", nargs="+", default=["groupsort2", "swish"])
    p.add_argument("--json", default=None, help="write results here")
    p.add_argument(
        "--no-xla-check",
        dest="xla_check",
        action="store_false",
        help="skip the Lipschitz chain without XLA",
    )
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch * 8, args.dim)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices(x).batch(args.batch).repeat()
    kinds = ["lipschitz", *args.twins] + (
        ["lipschitz_no_xla"] if args.xla_check else []
    )
    models = {k: build(k, args) for k in kinds}
    chain = {k: [] for k in kinds}
    step = {k: [] for k in kinds}
    for _ in range(args.repeats):  # interleave to share the machine's noise
        for k, m in models.items():
            chain[k].append(time_chain(m, args))
            step[k].append(time_train_step(m, args, data))
    res = {
        "config": vars(args),
        "tf_version": tf.__version__,
        "chain_step_ms": {k: 1e3 * statistics.median(v) for k, v in chain.items()},
        "train_step_ms": {k: 1e3 * statistics.median(v) for k, v in step.items()},
    }
    if args.xla_check:
        res["chain_ratio_no_xla_vs_xla"] = (
            res["chain_step_ms"]["lipschitz_no_xla"] / res["chain_step_ms"]["lipschitz"]
        )
    for twin in args.twins:
        res[f"chain_ratio_vs_{twin}"] = (
            res["chain_step_ms"]["lipschitz"] / res["chain_step_ms"][twin]
        )
        res[f"train_ratio_vs_{twin}"] = (
            res["train_step_ms"]["lipschitz"] / res["train_step_ms"][twin]
        )
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
