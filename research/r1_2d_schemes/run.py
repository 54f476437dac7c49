"""One experiment: train a Lipschitz EBM on a 2D density with one scheme, evaluate
exact metrics at checkpoints. Appends JSON lines to results.jsonl.

    taskset -c 1 python run.py --scheme is --density rings --steps 500,1000,2000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

import deel_ebm
import tensorflow as tf

from deel_ebm import datasets, metrics, nets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import schemes as S  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))


def parse():
    p = argparse.ArgumentParser()
    a = p.add_argument
    a("--scheme", required=True, choices=["is", "isref", "jarz", "pcd_ula", "pcd_mala", "ed"])
    a("--density", default="8gaussians")
    a("--seed", type=int, default=0)
    a("--steps", default="500,1000,2000")
    a("--max_seconds", type=float, default=None)
    a("--k", type=float, default=20.0)
    a("--k_max", type=float, default=None, help="learnable c = k_max sigmoid(s), init k")
    a("--units", default="256,256,256")
    a("--B", type=int, default=256)
    a("--M", type=int, default=4096)
    a("--lr", type=float, default=1e-3)
    a("--beta1", type=float, default=0.0)
    a("--ema", type=float, default=0.995)
    a("--anchor", type=float, default=1e-2)
    # proposal
    a("--ncomp", type=int, default=50)
    a("--inflate", type=float, default=1.2)
    a("--uniform", type=float, default=0.1)
    # chains
    a("--chain_steps", type=int, default=60)
    a("--step_size", type=float, default=5e-3)
    a("--target_acc", type=float, default=0.57)
    a("--buffer", type=int, default=10000)
    a("--reinit", type=float, default=0.05)
    a("--l2", type=float, default=0.1)
    # jarzynski
    a("--ess_thr", type=float, default=0.5)
    # ED
    a("--t", type=float, default=0.3)
    a("--ed_M", type=int, default=16)
    a("--w_stable", type=float, default=1.0)
    a("--tag", default="")
    a("--out", default=os.path.join(HERE, "results.jsonl"))
    a("--save", default=None, help="save EMA weights (npz) at the end")
    return p.parse_args()


def main():
    args = parse()
    assert "/work/wt-r1" in deel_ebm.__file__, deel_ebm.__file__
    ckpts = sorted(int(s) for s in args.steps.split(","))
    name = args.density
    x_train, x_test = datasets.load_2d(name, n_train=20000, n_test=5000, seed=args.seed)
    density = datasets.get_density(name)
    lo, hi = density.domain
    X = tf.constant(x_train, tf.float32)
    N = len(x_train)
    units = tuple(int(u) for u in args.units.split(","))
    tf.keras.utils.set_random_seed(args.seed)
    net = nets.lipschitz_mlp((2,), units=units, seed=args.seed)
    enet = nets.lipschitz_mlp((2,), units=units, seed=args.seed)

    if args.k_max:
        s0 = math.log(args.k / (args.k_max - args.k))
        s_var = tf.Variable(s0, dtype=tf.float32, name="log_temp")
        c_fn = lambda v=s_var: args.k_max * tf.sigmoid(v)  # noqa: E731
        params = net.trainable_variables + [s_var]
    else:
        s_var = None
        c_fn = lambda v=None: tf.constant(args.k, tf.float32)  # noqa: E731
        params = net.trainable_variables

    def energy_fn(x, training):
        return c_fn() * tf.reshape(net(x, training=training), [-1])

    ema = [tf.Variable(v, trainable=False) for v in params]
    opt = tf.keras.optimizers.Adam(args.lr, beta_1=args.beta1)
    base_seed = tf.constant([args.seed, 12345], tf.int64)
    info_vars = {}
    scheme = args.scheme

    if scheme in ("is", "isref"):
        q = S.MixtureProposal(x_train, args.ncomp, args.inflate, args.uniform, (lo, hi), args.seed)
    if scheme in ("isref", "pcd_mala"):
        log_step = tf.Variable(math.log(args.step_size), trainable=False)
    if scheme.startswith("pcd"):
        buf = tf.Variable(tf.random.uniform([args.buffer, 2], lo, hi, seed=args.seed), trainable=False)
    if scheme == "jarz":
        xw = tf.random.uniform([args.M, 2], lo, hi, seed=args.seed)
        net(xw[:1], training=True)
        e0, g0 = S.energy_and_grad(energy_fn, xw)
        walk = {
            "x": tf.Variable(xw, trainable=False),
            "x_old": tf.Variable(xw, trainable=False),
            # properly weighted at theta_0: log w = -E - log(uniform) (+const)
            # the completion -alpha(x, x_old) with x = x_old adds -E - step/4 |g|^2; undo it
            "log_w": tf.Variable(0.25 * args.step_size * S.sq_norm(g0), trainable=False),
        }

    def one_step(i):
        seed = tf.random.experimental.stateless_fold_in(base_seed, tf.cast(i, tf.int64))
        s_data, s_neg, s_move = S.split(seed, 3)
        idx = tf.random.stateless_uniform([args.B], s_data, 0, N, tf.int32)
        x_pos = tf.gather(X, idx)
        out = {}
        if scheme == "is":
            x_neg = S.proposal_sample(q, args.M, s_neg)
            lq = S.proposal_log_prob(q, x_neg)
            with tf.GradientTape() as tape:
                loss, out = S.is_loss(energy_fn, x_pos, x_neg, lq, args.anchor)
        elif scheme == "isref":
            step = tf.exp(log_step)
            x_neg, lw, acc = S.is_refined_negatives(energy_fn, q, args.M, step, args.chain_steps, s_neg)
            log_step.assign(S.adapt_step(log_step, acc, args.target_acc))
            with tf.GradientTape() as tape:
                loss, out = S.weighted_loss(energy_fn, x_pos, x_neg, lw, args.anchor)
            out["acc"], out["step"] = acc, step
        elif scheme == "ed":
            with tf.GradientTape() as tape:
                loss, out = S.energy_discrepancy_loss(energy_fn, x_pos, args.t, args.ed_M, s_neg, args.w_stable)
        elif scheme == "jarz":
            state = {k: v.read_value() for k, v in walk.items()}
            with tf.GradientTape() as tape:
                loss, log_w, e_w, g, out = S.jarzynski_step_loss(energy_fn, x_pos, state, args.step_size, args.anchor)
        elif scheme.startswith("pcd"):
            s1, s2, s3 = S.split(s_neg, 3)
            slots = tf.random.stateless_uniform([args.B], s1, 0, args.buffer, tf.int32)
            x0 = tf.gather(buf, slots)
            fresh = tf.random.stateless_uniform([args.B, 2], s2, lo, hi)
            re = tf.random.stateless_uniform([args.B], s3) < args.reinit
            x0 = tf.where(re[:, None], fresh, x0)
            e0, g0 = S.energy_and_grad(energy_fn, x0)
            if scheme == "pcd_mala":
                step = tf.exp(log_step)
                x_neg, _, _, acc = S.mala_chain(energy_fn, x0, e0, g0, step, args.chain_steps, s_move)
                log_step.assign(S.adapt_step(log_step, acc, args.target_acc))
                out["acc"], out["step"] = acc, step
            else:
                x_neg = S.ula_chain(energy_fn, x0, g0, args.step_size, args.chain_steps, s_move)
            x_neg = tf.stop_gradient(x_neg)
            with tf.GradientTape() as tape:
                loss, out2 = S.cd_loss(energy_fn, x_pos, x_neg, args.l2)
            out.update(out2)
        grads = tape.gradient(loss, params)
        opt.apply_gradients(zip(grads, params))
        for e, v in zip(ema, params):
            e.assign(args.ema * e + (1 - args.ema) * v)
        if scheme == "pcd_ula" or scheme == "pcd_mala":
            buf.scatter_nd_update(slots[:, None], x_neg)
        if scheme == "jarz":
            new, res = S.jarzynski_move(state["x"], e_w, g, log_w, args.step_size, out["ess"], args.ess_thr, s_move)
            for k2, v in new.items():
                walk[k2].assign(v)
            out["resampled"] = res
        out["loss"] = loss
        return out

    step_fn = tf.function(one_step, jit_compile=True)

    # ---- evaluation with the EMA weights
    def load_ema():
        for dst, src in zip(enet.variables, net.variables):
            dst.assign(src)
        for dst, src in zip(enet.trainable_variables, ema[: len(net.trainable_variables)]):
            dst.assign(src)
        enet(tf.zeros([1, 2]), training=True)  # refresh wbar of the averaged weights
        return float(args.k_max * tf.sigmoid(ema[-1])) if args.k_max else args.k

    @tf.function(jit_compile=True)
    def e_eval(x, c):
        return c * tf.reshape(enet(x, training=False), [-1])

    @tf.function(jit_compile=True)
    def g_eval(x, c):
        with tf.GradientTape() as t:
            t.watch(x)
            e = c * tf.reshape(enet(x, training=False), [-1])
        return tf.norm(t.gradient(e, x), axis=1)

    def evaluate(c):
        fn = lambda x: e_eval(tf.constant(x, tf.float32), tf.constant(c, tf.float32)).numpy()  # noqa: E731
        m = metrics.exact_metrics_2d(fn, name, x_test=x_test)
        gp, _ = metrics.grid_points(density.domain, 256)
        pts = np.concatenate([gp, x_test]).astype(np.float32)
        gmax = float(np.max(g_eval(tf.constant(pts), tf.constant(c, tf.float32)).numpy()))
        r = {k2: (v.tolist() if isinstance(v, np.ndarray) else v) for k2, v in m.items()}
        r.update(grad_max=gmax, c=c, cap=args.k_max or args.k)
        r["certified"] = bool(gmax <= (args.k_max or args.k) * (1 + 1e-3) and gmax <= c * (1 + 1e-3))
        return r

    t_train, t_first, done = 0.0, None, 0
    last = {}
    cfg = {k2: v for k2, v in vars(args).items() if k2 not in ("out", "save")}
    for target in ckpts:
        while done < target:
            t0 = time.perf_counter()
            last = step_fn(tf.constant(done, tf.int64))
            if done == 0 or done % 100 == 99:
                last = {k2: float(v) for k2, v in last.items()}
                if not math.isfinite(last["loss"]):
                    print("non-finite loss at", done, flush=True)
            dt = time.perf_counter() - t0
            if done == 0:
                t_first = dt
            else:
                t_train += dt
            done += 1
            if args.max_seconds and t_train > args.max_seconds:
                break
        # sync the last step before timing ends
        last = {k2: float(v) for k2, v in last.items()}
        c = load_ema()
        t0 = time.perf_counter()
        r = evaluate(c)
        r.update(cfg)
        r.update(
            at_steps=done, train_seconds=t_train, compile_seconds=t_first,
            sec_per_step=t_train / max(done - 1, 1), eval_seconds=time.perf_counter() - t0,
            last=last,
        )
        print(json.dumps({k2: r[k2] for k2 in ("scheme", "density", "tag", "at_steps", "kl", "reverse_kl", "test_nll", "data_test_nll", "sec_per_step", "grad_max", "c", "certified")}), flush=True)
        if r["mode_masses"]:
            print("  modes", np.round(r["mode_masses"], 3).tolist(), flush=True)
        print("  last", {k2: round(v, 4) for k2, v in last.items()}, flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(r) + "\n")
        if args.max_seconds and t_train > args.max_seconds:
            break
    if args.save:
        load_ema()
        np.savez(args.save, *[v.numpy() for v in enet.variables], c=c)


if __name__ == "__main__":
    main()
