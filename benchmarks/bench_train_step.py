"""Time a Langevin step and a PCD train step: Lipschitz energy vs. unconstrained twin.

Ratios are what counts (this machine's timings are noisy): both models are timed in
the same run, interleaved, and the median of several repeats is reported.

    python benchmarks/bench_train_step.py --batch 512 --units 256 256 256 --steps 60
    python benchmarks/bench_train_step.py --batch 512 --net conv     # digits energy

It also reports the chain's achieved GFLOP/s over the rate of a large XLA matrix
product measured in the same run, the share of a chain step that is the sampler's
own work (noise, update, clipping: the same chain on a quadratic energy), and
where a Lipschitz train step goes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import deel_ebm  # first: it selects the Keras 2 API

# isort: split
import tensorflow as tf

from deel_ebm.core.samplers import compile_chain


def build_net(kind, args):
    """The energy network of ``kind`` (lipschitz or a twin's activation)."""
    nets = deel_ebm.nets
    if args.net == "conv":  # the digits energy, 8x8x1 images
        if kind == "lipschitz":
            return nets.lipschitz_convnet((8, 8, 1))
        return nets.unconstrained_convnet((8, 8, 1), activation=kind)
    if kind == "lipschitz":
        # GroupSort2, as the twins: in 2D the library's default sorts FullSort then by 8
        return nets.lipschitz_mlp(
            (args.dim,),
            units=args.units,
            activation=args.activation or "groupsort2",
        )
    return nets.unconstrained_mlp((args.dim,), units=args.units, activation=kind)


def build(kind, args):
    jit = "auto"
    train_jit = kind.endswith("+jit")  # the whole train step XLA-compiled
    kind = kind.removesuffix("+jit")
    if kind == "lipschitz_no_xla":  # the same chain without XLA: is XLA faster?
        kind, jit = "lipschitz", False
    kind = kind.removesuffix("_tf_sort")  # sorted by tf.sort under XLA (timed so)
    keras_conv = kind == "lipschitz_keras_conv"  # convolutions as Keras runs them
    if keras_conv:
        kind = "lipschitz"
    net = build_net(kind, args)
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
            # PCD in every dimension: the chain is what is timed (the 2D default
            # trains on proposal draws: ``--scheme default``)
            proposal="auto" if args.scheme == "default" else None,
        )
    if keras_conv:
        model.gemm_convolutions = False  # the network's own convolutions
    if model.proposal is not None:
        model.proposal.fit(_data(args)[: 8 * args.batch])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), jit_compile=train_jit)
    return model


def _time_per_step(chain, model, args):
    """Seconds per Langevin step of ``chain(x0, seed)`` from prior draws."""
    x0 = model.buffer.prior_sample(args.batch, [0, 1])
    chain(x0, tf.constant([0, 0], tf.int64)).state.x.numpy()  # compile
    t = time.perf_counter()
    for i in range(args.inner):
        chain(x0, tf.constant([0, i], tf.int64)).state.x.numpy()
    return (time.perf_counter() - t) / (args.inner * args.steps)


def time_chain(model, args):
    model.refresh_constraints()
    return _time_per_step(compile_chain(model.sampler, model), model, args)


def time_sampler_work(model, args):
    """One step of the same sampler on a quadratic energy (gradient ``x``).

    What a chain step costs besides the network: the Gaussian noise, the
    update, the domain clipping and the gradient-norm statistics.
    """

    def quadratic(x):
        return 0.5 * tf.reduce_sum(tf.square(x), axis=list(range(1, x.shape.rank)))

    return _time_per_step(compile_chain(model.sampler, quadratic), model, args)


#: seconds of each model's first train-step call (trace and compile), by id
FIRST_CALL_S: dict = {}


def time_train_step(model, args, data):
    fn = model.make_train_function()
    it = iter(data)
    t = time.perf_counter()
    float(fn(it)["loss"])  # trace and compile (once per model)
    FIRST_CALL_S.setdefault(id(model), time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(args.inner):
        logs = fn(it)
    float(logs["loss"])
    return (time.perf_counter() - t) / args.inner


def energy_grad_flops(network, batch):
    """FLOPs of one energy gradient of ``network`` for the whole batch.

    A dense layer of shape (m, n) costs 2mn per sample forward and 2mn for the
    input gradient (no weight gradient in a chain); a convolution costs
    2·h_out·w_out·kh·kw·c_in·c_out per sample each way. Activations, GroupSort,
    pooling and the update are O(activations) and left out (a lower count, so the
    efficiency below is a slight under-estimate).
    """
    per_sample = 0
    for layer in network.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        if len(kernel.shape) == 2:
            per_sample += 2 * int(np.prod(kernel.shape))
        elif len(kernel.shape) == 4:
            h, w = layer.output_shape[1:3]
            per_sample += 2 * h * w * int(np.prod(kernel.shape))
    return 2 * batch * per_sample


def matmul_gflops(n=1024, inner=20):
    """Rate of a large XLA matrix product on this machine, in GFLOP/s."""
    a = tf.random.stateless_normal((n, n), seed=[1, 2])
    b = tf.random.stateless_normal((n, n), seed=[3, 4])
    mm = tf.function(lambda a, b: tf.matmul(a, b), jit_compile=True)
    mm(a, b).numpy()
    t = time.perf_counter()
    for _ in range(inner):
        mm(a, b).numpy()
    return 2 * n**3 * inner / (time.perf_counter() - t) / 1e9


def time_loss_pass(model, args, data, training):
    """The differentiated loss pass of a train step, alone (compiled, no XLA).

    ``training=True`` recomputes deel-lip's constrained kernels (power iteration
    and Bjorck) inside the tape, as ``train_step`` does; ``training=False`` reads
    the cached ones: the difference is the cost of the reparametrisation.
    """
    x = next(iter(data))
    x = tf.concat([x, x], axis=0)
    variables = model.network.variables  # kernels, and wbar for the cached pass

    @tf.function
    def grad_pass(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x, training=training))
        grads = tape.gradient(
            loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return loss + tf.add_n([tf.reduce_sum(g) for g in grads])

    grad_pass(x)
    t = time.perf_counter()
    for _ in range(args.inner):
        out = grad_pass(x)
    float(out)
    return (time.perf_counter() - t) / args.inner


def _data(args):
    """The benchmark's training points (standard normal, ``8 · batch`` of them)."""
    rng = np.random.default_rng(0)
    shape = (8, 8, 1) if args.net == "conv" else (args.dim,)
    return rng.normal(size=(args.batch * 8, *shape)).astype("float32")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--net", choices=("dense", "conv"), default="dense")
    p.add_argument("--dim", type=int, default=2, help="input size of the dense net")
    p.add_argument("--units", type=int, nargs="+", default=[256, 256, 256])
    p.add_argument(
        "--activation",
        default=None,
        help="the Lipschitz net's activation(s), as lipschitz_mlp takes them "
        "(default groupsort2, the twins' activation; the low-dimensional default "
        "net is --units 64 128 128 --activation fullsort,groupsort8,groupsort8)",
    )
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--inner", type=int, default=5, help="calls per timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--twins", nargs="+", default=["groupsort2", "swish"])
    p.add_argument(
        "--scheme",
        choices=("pcd", "default"),
        default="pcd",
        help="pcd: chains in every train step; default: the model's default "
        "(importance-sampled proposal draws up to 8 dimensions)",
    )
    p.add_argument(
        "--train-jit",
        action="store_true",
        help="also time every model with its whole train step XLA-compiled "
        "(compile(jit_compile=True)), as '<name>+jit'",
    )
    p.add_argument("--json", default=None, help="write results here")
    p.add_argument(
        "--no-xla-check",
        dest="xla_check",
        action="store_false",
        help="skip the Lipschitz chain without XLA",
    )
    p.add_argument(
        "--tf-sort-check",
        action="store_true",
        help="also time the Lipschitz model with GroupSort layers sorted by "
        "tf.sort under XLA (not by the sorting network), as 'lipschitz_tf_sort'",
    )
    args = p.parse_args(argv)
    x = _data(args)
    data = tf.data.Dataset.from_tensor_slices(x).batch(args.batch).repeat()
    kinds = ["lipschitz", *args.twins]
    if args.train_jit:
        kinds += [f"{k}+jit" for k in kinds]
    if args.xla_check:
        kinds.append("lipschitz_no_xla")
    if args.tf_sort_check:
        kinds += ["lipschitz_tf_sort"] + (["lipschitz_tf_sort+jit"] * args.train_jit)
    if args.net == "conv":
        kinds.append("lipschitz_keras_conv")
    models = {k: build(k, args) for k in kinds}
    chain = {k: [] for k in kinds}
    step = {k: [] for k in kinds}
    loss_pass = {"recompute": [], "cached": []}
    matmul, sampler_work = [], []
    for _ in range(args.repeats):  # interleave to share the machine's noise
        matmul.append(matmul_gflops())
        for k, m in models.items():
            # the sort of GroupSort layers under XLA: the network, or tf.sort
            with deel_ebm.nets.sorting_network("_tf_sort" not in k):
                chain[k].append(time_chain(m, args))
                step[k].append(time_train_step(m, args, data))
        lip = models["lipschitz"]
        sampler_work.append(time_sampler_work(lip, args))
        loss_pass["recompute"].append(time_loss_pass(lip, args, data, True))
        loss_pass["cached"].append(time_loss_pass(lip, args, data, False))
    med = statistics.median
    res = {
        "config": vars(args),
        "tf_version": tf.__version__,
        "chain_step_ms": {k: 1e3 * med(v) for k, v in chain.items()},
        "train_step_ms": {k: 1e3 * med(v) for k, v in step.items()},
        # the first call of a model's train step: tracing and compilation
        "first_train_call_s": {k: FIRST_CALL_S[id(m)] for k, m in models.items()},
    }
    # hardware efficiency of the Lipschitz chain against a large matrix product
    chain_s = med(chain["lipschitz"])
    flops = energy_grad_flops(models["lipschitz"].network, args.batch)
    res["chain_gflops"] = flops / chain_s / 1e9
    res["matmul_gflops"] = med(matmul)
    res["chain_efficiency"] = res["chain_gflops"] / res["matmul_gflops"]
    res["chain_samples_per_s"] = args.batch / chain_s
    # the sampler's own work (noise, update, clipping) and the network's rate
    work_s = med(sampler_work)
    res["sampler_work_ms"] = 1e3 * work_s
    res["sampler_work_share"] = work_s / chain_s
    res["network_gflops"] = flops / (chain_s - work_s) / 1e9
    res["network_efficiency"] = res["network_gflops"] / res["matmul_gflops"]
    # where a Lipschitz train step goes
    total = res["train_step_ms"]["lipschitz"]
    chains_ms = args.steps * res["chain_step_ms"]["lipschitz"]
    recompute_ms = 1e3 * med(loss_pass["recompute"])
    cached_ms = 1e3 * med(loss_pass["cached"])
    res["lipschitz_breakdown_ms"] = {
        "train_step": total,
        "chain": chains_ms,
        "loss_pass_with_reparametrisation": recompute_ms,
        "of_which_reparametrisation": recompute_ms - cached_ms,
        "rest (optimizer, buffer, metrics)": total - chains_ms - recompute_ms,
    }
    if args.net == "conv":
        res["chain_ratio_keras_conv_vs_gemm"] = (
            res["chain_step_ms"]["lipschitz_keras_conv"]
            / res["chain_step_ms"]["lipschitz"]
        )
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
        if args.train_jit:
            res[f"train_ratio_jit_vs_{twin}_jit"] = (
                res["train_step_ms"]["lipschitz+jit"]
                / res["train_step_ms"][f"{twin}+jit"]
            )
            res[f"train_ratio_jit_vs_{twin}"] = (
                res["train_step_ms"]["lipschitz+jit"] / res["train_step_ms"][twin]
            )
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
