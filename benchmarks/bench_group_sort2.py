"""GroupSort2's layout under XLA: deel-lip's interleaved pairs against other forms.

deel-lip's ``GroupSort2`` sorts the pairs of neighbouring units ``(2i, 2i + 1)``
(strided slices, then an interleaving concat). This times, in a bare XLA loop of
60 gradient steps on a 3-layer dense net (``x @ W`` then the activation, no bias,
batch 512, width 256), forward plus input gradient per step with:

- ``deel_lip``: deel-lip's own form (what the library's layers run);
- ``halves``: the pairs ``(i, i + n/2)`` as two contiguous halves (the same
  function once the layer before writes its units evens-first and the next
  reads them so: a permutation of the kernels);
- ``reverse_where``: each unit's partner by ``tf.reverse`` on the pairs, then
  a select of the minimum or the maximum (the same values and gradients);
- ``swish`` and ``relu``: references, not 1-Lipschitz-preserving pair sorts.

Ratios are what counts: the variants are timed in the same run, interleaved,
median of ``--repeats``.

    python benchmarks/bench_group_sort2.py --dim 64 \
        --json benchmarks/results/group_sort2_64d.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import deel_ebm  # noqa: F401  first: it selects the Keras 2 API

# isort: split
import tensorflow as tf


def deel_lip(x):
    pairs = tf.reshape(x, (-1, x.shape[-1] // 2, 2))
    b, c = tf.split(pairs, 2, -1)
    out = tf.concat([tf.minimum(b, c), tf.maximum(b, c)], -1)
    return tf.reshape(out, (-1, x.shape[-1]))


def halves(x):
    a, b = tf.split(x, 2, -1)
    return tf.concat([tf.minimum(a, b), tf.maximum(a, b)], -1)


def reverse_where(x):
    n = x.shape[-1]
    partner = tf.reshape(tf.reverse(tf.reshape(x, (-1, n // 2, 2)), [-1]), (-1, n))
    first = tf.constant([True, False] * (n // 2))
    return tf.where(first, tf.minimum(x, partner), tf.maximum(x, partner))


FORMS = {
    "deel_lip": deel_lip,
    "halves": halves,
    "reverse_where": reverse_where,
    "swish": lambda x: x * tf.sigmoid(x),
    "relu": tf.nn.relu,
}


def chain(act, kernels, steps, biases=None, head=None):
    """60 gradient steps of ``sum(net(x))``; with ``biases``, each layer adds
    one before its activation; with ``head``, a last ``256 -> 1`` layer (the
    library's nets have both)."""

    @tf.function(jit_compile=True)
    def run(x):
        def body(t, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                h = x
                for i, w in enumerate(kernels):
                    h = h @ w
                    h = act(h if biases is None else h + biases[i])
                e = tf.reduce_sum(h if head is None else h @ head)
            return t + 1, x - 1e-4 * tape.gradient(e, x)

        return tf.while_loop(lambda t, x: t < steps, body, (0, x))[1]

    return run


def check_reverse_where():
    """``reverse_where`` returns deel-lip's values and input gradients."""
    x = tf.random.stateless_normal([64, 256], [3, 4])
    w = tf.random.stateless_normal([64, 256], [5, 6])
    out = {}
    for name in ("deel_lip", "reverse_where"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = FORMS[name](x)
            loss = tf.reduce_sum(y * w)
        out[name] = (y, tape.gradient(loss, x))
    return all(
        bool(tf.reduce_all(a == b))
        for a, b in zip(out["deel_lip"], out["reverse_where"])
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--bias-and-head",
        action="store_true",
        help="biases before each activation and a 256 -> 1 last layer, as the "
        "library's nets",
    )
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args(argv)
    g = tf.random.Generator.from_seed(0)
    sizes = [args.dim, args.width, args.width, args.width]
    kernels = [g.normal((m, n)) / m**0.5 for m, n in zip(sizes, sizes[1:])]
    extra = {}
    if args.bias_and_head:
        extra["biases"] = [0.1 * g.normal((n,)) for n in sizes[1:]]
        extra["head"] = g.normal((args.width, 1)) / args.width**0.5
    x = g.normal((args.batch, args.dim))
    fns = {
        name: chain(act, kernels, args.steps, **extra) for name, act in FORMS.items()
    }
    for fn in fns.values():
        fn(x).numpy()  # compile
    ms = {name: [] for name in fns}
    for _ in range(args.repeats):  # interleaved
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(x).numpy()
            ms[name].append(1e3 * (time.perf_counter() - t) / args.steps)
    res = {
        "config": vars(args),
        "tf_version": tf.__version__,
        "reverse_where_equals_deel_lip": check_reverse_where(),
        "step_ms": {k: statistics.median(v) for k, v in ms.items()},
    }
    base = res["step_ms"]["deel_lip"]
    res["ratio_vs_deel_lip"] = {k: v / base for k, v in res["step_ms"].items()}
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
