"""Cost of the Langevin noise: Gaussian draws inside an XLA loop vs. outside XLA.

A chain step of ``deel_ebm.LangevinSampler`` draws ``batch x dim`` standard
normals inside its XLA-compiled loop (``tf.random.stateless_normal`` on a seed
folded with the step). This times, per step of a 60-step loop, the draws alone:
XLA with the default (Philox) and Threefry algorithms, XLA uniforms, and
TensorFlow's own kernels generating all the steps' draws at once outside XLA.

    python benchmarks/bench_noise.py --batch 512 --dim 64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402


def xla_loop(draw, shape, steps):
    @tf.function(jit_compile=True)
    def run(seed):
        def body(t, acc):
            return t + 1, acc + draw(tf.random.experimental.stateless_fold_in(seed, t))

        return tf.while_loop(lambda t, a: t < steps, body, (0, tf.zeros(shape)))[1]

    return run


def box_muller(shape, seed):
    """Standard normals from uniforms by the Box-Muller transform (a uniform
    per normal, one log, sqrt, cos and sin per pair)."""
    import math

    n = math.prod(shape)
    u = tf.random.stateless_uniform([2, (n + 1) // 2], seed)
    r = tf.sqrt(-2.0 * tf.math.log1p(-u[0]))  # 1 - u in (0, 1]
    theta = (2.0 * math.pi) * u[1]
    z = tf.concat([r * tf.cos(theta), r * tf.sin(theta)], axis=0)
    return tf.reshape(z[:n], shape)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    shape, steps = (args.batch, args.dim), args.steps
    fns = {
        "xla_normal_default": xla_loop(
            lambda s: tf.random.stateless_normal(shape, s), shape, steps
        ),
        "xla_normal_threefry": xla_loop(
            lambda s: tf.random.stateless_normal(shape, s, alg="threefry"),
            shape,
            steps,
        ),
        "xla_box_muller": xla_loop(lambda s: box_muller(shape, s), shape, steps),
        "xla_uniform_default": xla_loop(
            lambda s: tf.random.stateless_uniform(shape, s), shape, steps
        ),
        "tf_kernel_normal_all_steps": tf.function(
            lambda s: tf.random.stateless_normal((steps, *shape), s)
        ),
    }
    seed = tf.constant([1, 2], tf.int64)
    for fn in fns.values():
        fn(seed).numpy()  # compile
    times = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(5):
                fn(seed).numpy()
            times[k].append((time.perf_counter() - t) / 5 / steps)
    res = {
        "config": vars(args),
        "tf_version": tf.__version__,
        "ms_per_step": {k: 1e3 * statistics.median(v) for k, v in times.items()},
    }
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
