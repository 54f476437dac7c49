"""Time GroupSort's sort: ``tf.sort`` against the sorting network, graph and XLA.

A forward and backward pass of the sort alone, on the shapes of the
low-dimensional default net in its train step (1024 data points and 4096
proposal draws: FullSort on 64 units, GroupSort8 on 128) and of a 3 × 256
GroupSort8 layer in a 512-chain step. Ratios are what counts: every variant is
timed in the same run, interleaved, median of ``--repeats``.

    python benchmarks/bench_sorting.py --json benchmarks/results/sorting.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import deel_ebm  # first: it selects the Keras 2 API

# isort: split
import tensorflow as tf

#: name -> the shape sorted along its last axis
SHAPES = {
    "fullsort_64_x5120": (5120, 64),
    "groupsort8_128_x5120": (5120, 16, 8),
    "groupsort8_256_x512": (512, 32, 8),
}
SORTS = {
    "tf.sort": lambda x: tf.sort(x, axis=-1),
    "network": deel_ebm.nets.bitonic_sort,
}


def forward_backward(sort, jit):
    @tf.function(jit_compile=jit)
    def fn(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(sort(x) * tf.range(x.shape[-1], dtype=x.dtype))
        return tape.gradient(y, x)

    return fn


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inner", type=int, default=20, help="calls per timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # one function per variant and shape: retraces
    res = {"config": vars(args), "tf_version": tf.__version__, "ms": {}}
    for name, shape in SHAPES.items():
        x = tf.random.stateless_normal(shape, seed=[0, 1])
        fns = {
            f"{sort} {'xla' if jit else 'graph'}": forward_backward(SORTS[sort], jit)
            for sort in SORTS
            for jit in (False, True)
        }
        ref = fns["tf.sort graph"](x).numpy()
        for key, fn in fns.items():  # compile, and check: the same gradient
            tf.debugging.assert_equal(fn(x), ref, message=key)
        times = {k: [] for k in fns}
        for _ in range(args.repeats):
            for key, fn in fns.items():
                t = time.perf_counter()
                for _ in range(args.inner):
                    out = fn(x)
                out.numpy()
                times[key].append((time.perf_counter() - t) / args.inner)
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        ms["network xla vs tf.sort graph"] = ms["tf.sort graph"] / ms["network xla"]
        ms["network xla vs tf.sort xla"] = ms["tf.sort xla"] / ms["network xla"]
        res["ms"][name] = ms
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
