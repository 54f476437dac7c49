"""How fast can the digits conv energy's chain step be? Formulations side by side.

A chain reads deel-lip's cached constrained kernels, so inside a chain every
convolution is a fixed linear operator. This times one Langevin step (energy
gradient, noise, update) of ``nets.lipschitz_convnet((8, 8, 1))`` in one run, all
XLA-compiled, in these formulations:

- ``keras``: the Keras model itself (``model(x, training=False)``), what the
  library's chains run today;
- ``dense``: every convolution replaced by its matrix (built once from the
  layer applied to the identity basis, with the layer's bias), the other layers
  (GroupSort2, pooling, dense) called as they are;
- ``patches``: every convolution as one matrix product of its 3x3 patches
  (padding and nine shifted slices, concatenated) with the cached kernel: the
  convolution's own FLOPs, in a form XLA's CPU backend runs as a GEMM;
- ``keras_graph``: the Keras model in a graph-mode loop without XLA (TensorFlow's
  oneDNN kernels), the noise drawn in the same loop.

and checks that the formulations compute the same energy and gradient. The
efficiency is reported against the convolution FLOPs (as ``bench_train_step.py``
counts them) and a 1024x1024 XLA matrix product timed in the same run.

    python benchmarks/bench_conv_chain.py --batch 512 --steps 60 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

import bench_train_step as bts  # noqa: E402

import deel_ebm  # noqa: E402  (first: it selects the Keras 2 API)
from deel_ebm.core.gemm_forward import patch_conv2d  # noqa: E402

# isort: split
import tensorflow as tf  # noqa: E402


def conv_matrix(layer, in_shape):
    """``(matrix, bias)`` of a linear layer on inputs of ``in_shape``:
    ``layer(x) = x_flat @ matrix + bias`` (flattened, channels last)."""
    n = math.prod(in_shape)
    zero = layer(tf.zeros([1, *in_shape]), training=False)
    eye = tf.reshape(tf.eye(n), [n, *in_shape])
    cols = layer(eye, training=False) - zero
    return tf.reshape(cols, [n, -1]), tf.reshape(zero, [-1])


def dense_forward(model):
    """The energy of ``model`` with its convolutions as matrix products."""
    steps = []
    shape = model.input_shape[1:]
    for layer in model.layers:
        out_shape = layer.compute_output_shape((None, *shape))[1:]
        if isinstance(layer, tf.keras.layers.Conv2D):
            m, b = conv_matrix(layer, shape)
            steps.append(("matrix", (m, b, tuple(out_shape))))
        else:
            steps.append(("layer", layer))
        shape = tuple(out_shape)

    def forward(x):
        for kind, op in steps:
            if kind == "matrix":
                m, b, out_shape = op
                flat = tf.reshape(x, [tf.shape(x)[0], -1])
                x = tf.reshape(tf.matmul(flat, m) + b, [-1, *out_shape])
            else:
                x = op(x, training=False)
        return tf.reshape(x, [-1])

    return forward


def patches_forward(model, upto=None, skip=()):
    """The energy of ``model`` with each convolution as a GEMM on its patches
    (``deel_ebm.core.gemm_forward.patch_conv2d``, what the library's chains run).

    ``upto`` / ``skip`` (ablations): stop after the first ``upto`` layers, leave
    out the layers whose indices are in ``skip``; the outputs are then summed
    per sample.
    """
    layers = model.layers[:upto]

    def forward(x):
        for i, layer in enumerate(layers):
            if i in skip:
                continue
            if isinstance(layer, tf.keras.layers.Conv2D):
                out = patch_conv2d(x, layer.wbar, layer.padding)
                x = out + layer.bias if layer.use_bias else out
            else:
                x = layer(x, training=False)
        return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)

    return forward


def langevin(energy, steps, step_size=5e-3, jit_compile=True):
    @tf.function(jit_compile=jit_compile)
    def chain(x, seed):
        def body(t, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                e = tf.reduce_sum(energy(x))
            g = tape.gradient(e, x)
            noise = tf.random.stateless_normal(
                tf.shape(x), tf.random.experimental.stateless_fold_in(seed, t)
            )
            return t + 1, x - step_size * g + math.sqrt(2 * step_size) * noise

        return tf.while_loop(lambda t, x: t < steps, body, (0, x))[1]

    return chain


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--inner", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--ablation",
        action="store_true",
        help="also time the patch form cut after each layer, and without its "
        "GroupSort2 layers (where the step goes; not the same energy)",
    )
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    tf.keras.utils.set_random_seed(0)
    net = deel_ebm.nets.lipschitz_convnet((8, 8, 1))
    net(tf.zeros([1, 8, 8, 1]), training=True)  # fills the cached kernels
    k = 20.0
    energies = {
        "keras": lambda x: k * tf.reshape(net(x, training=False), [-1]),
    }
    dense = dense_forward(net)
    energies["dense"] = lambda x: k * dense(x)
    patches = patches_forward(net)
    energies["patches"] = lambda x: k * patches(x)
    x = tf.random.stateless_uniform([args.batch, 8, 8, 1], [1, 2], -1.0, 1.0)
    # the formulations agree
    ref_e, ref_g = None, None
    agreement = {}
    for name, fn in energies.items():
        with tf.GradientTape() as tape:
            tape.watch(x)
            e = fn(x)
            total = tf.reduce_sum(e)
        g = tape.gradient(total, x)
        if ref_e is None:
            ref_e, ref_g = e, g
        agreement[name] = {
            "max_abs_energy_diff": float(tf.reduce_max(tf.abs(e - ref_e))),
            "max_abs_grad_diff": float(tf.reduce_max(tf.abs(g - ref_g))),
        }
    chains = {name: langevin(fn, args.steps) for name, fn in energies.items()}
    if args.ablation:
        for i, layer in enumerate(net.layers, start=1):
            chains[f"ablation_upto_{i}_{layer.name}"] = langevin(
                patches_forward(net, upto=i), args.steps
            )
        sorts = tuple(
            i for i, la in enumerate(net.layers) if "group_sort" in la.name.lower()
        )
        chains["ablation_no_groupsort"] = langevin(
            patches_forward(net, skip=sorts), args.steps
        )
    chains["keras_graph"] = langevin(energies["keras"], args.steps, jit_compile=False)
    seed = tf.constant([0, 0], tf.int64)
    for c in chains.values():
        c(x, seed).numpy()  # compile
    times = {name: [] for name in chains}
    matmul = []
    for _ in range(args.repeats):
        matmul.append(bts.matmul_gflops())
        for name, c in chains.items():
            t = time.perf_counter()
            for i in range(args.inner):
                c(x, tf.constant([0, i], tf.int64)).numpy()
            times[name].append((time.perf_counter() - t) / (args.inner * args.steps))
    flops = bts.energy_grad_flops(net, args.batch)
    mm = statistics.median(matmul)
    res = {"config": vars(args), "tf_version": tf.__version__, "matmul_gflops": mm}
    res["agreement"] = agreement
    res["chain_step_ms"] = {n: 1e3 * statistics.median(v) for n, v in times.items()}
    full = {n: ms for n, ms in res["chain_step_ms"].items() if n in energies}
    full["keras_graph"] = res["chain_step_ms"]["keras_graph"]
    res["efficiency"] = {n: flops / (ms / 1e3) / 1e9 / mm for n, ms in full.items()}
    res["samples_per_s"] = {n: args.batch / (ms / 1e3) for n, ms in full.items()}
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
