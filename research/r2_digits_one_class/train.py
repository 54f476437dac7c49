"""One experiment = one recipe trained on each of the 10 classes; writes results/<name>.json.

python train.py NAME '{"method": "hkr", ...}' [split]
"""
import json, sys, time
import numpy as np
from common import get_split, scores_report, summarise, save
import lipebm as L
import tensorflow as tf
from deel_ebm import nets

DEFAULT = dict(method="hkr", net="mlp", units=[256, 256, 256], filters=[32, 64], dense_units=128,
               steps=1500, max_seconds=180, batch=64, lr=1e-3, lr_end=1e-5, seed=0,
               # hkr
               margin=0.5, lbda=100.0, newton_steps=8, newton_eta=4.0, level=None, warmup=100,
               neg_mix="uniform,mixup,noisy", noisy_min=0.1, noisy_max=1.0, mix_noise=0.05,
               # chains (ml, hkr_chain)
               k=64.0, eta=None, chain_steps=40, buffer=4096, reinit=0.05, sampler="ula",
               reinit_from="noisy", reg=0.0,
               # dist
               dist_loss="huber", hkr_weight=0.0,
               # is
               is_m=256, shrink=0.1)


def build_net(c):
    if c["net"] == "mlp":
        return nets.lipschitz_mlp(input_shape=(8, 8, 1), units=tuple(c["units"]), seed=c["seed"])
    return nets.lipschitz_convnet(input_shape=(8, 8, 1), filters=tuple(c["filters"]),
                                  dense_units=c["dense_units"], seed=c["seed"])


def train_class(c, x_cls, x_eval):
    tf.keras.utils.set_random_seed(c["seed"])
    gen = tf.random.Generator.from_seed(c["seed"])
    net = build_net(c)
    xc = tf.constant(x_cls)
    n = x_cls.shape[0]
    B = c["batch"]
    sched = tf.keras.optimizers.schedules.PolynomialDecay(c["lr"], c["steps"], c["lr_end"])
    opt = tf.keras.optimizers.Adam(sched, beta_1=0.0 if c["method"] == "ml" else 0.9)
    k = float(c["k"])
    eta = c["eta"] if c["eta"] is not None else 0.02 / k   # drift per step eta*k = 0.02
    level = c["level"] if c["level"] is not None else 1.5 * c["margin"]
    kinds = c["neg_mix"].split(",")
    net(xc[:2], training=True)

    def starts(xb, nneg):
        parts, per = [], nneg // len(kinds)
        for i, kind in enumerate(kinds):
            m = per if i < len(kinds) - 1 else nneg - per * (len(kinds) - 1)
            xs = xb[:m]
            if kind == "uniform":
                parts.append(L.uniform_box(gen, m, (8, 8, 1)))
            elif kind == "mixup":
                parts.append(L.mixup_pairs(gen, xs, c["mix_noise"]))
            elif kind == "noisy":
                parts.append(L.noisy_data(gen, xs, c["noisy_min"], c["noisy_max"]))
        return tf.concat(parts, 0)

    def batch():
        return tf.gather(xc, gen.uniform([B], 0, n, dtype=tf.int64))

    buf = tf.Variable(starts(tf.gather(xc, np.random.RandomState(c["seed"]).randint(0, n, c["buffer"])), c["buffer"])
                      if c["method"] in ("ml", "hkr_chain") else tf.zeros([1, 8, 8, 1]))
    if c["method"] == "is":
        mu, Lc, Linv, logdet = L.gaussian_proposal(x_cls, c["shrink"])
        mu, Lc, Linv = map(tf.constant, (mu, Lc, Linv))
    S = tf.reshape(xc, [n, -1])

    @tf.function
    def step(it):
        xp = batch()
        logs = {}
        if c["method"] == "hkr":
            x0 = starts(tf.random.shuffle(xp), B)
            xn = L.newton_to_level(net, x0, gen, c["newton_steps"], c["newton_eta"], level) if it >= c["warmup"] else x0
        elif c["method"] in ("ml", "hkr_chain"):
            idx = gen.uniform([B], 0, c["buffer"], dtype=tf.int64)
            x0 = tf.gather(buf, idx)
            fresh = starts(tf.random.shuffle(xp), B) if c["reinit_from"] == "mix" else (
                L.uniform_box(gen, B, (8, 8, 1)) if c["reinit_from"] == "uniform" else
                L.noisy_data(gen, xp, c["noisy_min"], c["noisy_max"]))
            x0 = tf.where(gen.uniform([B, 1, 1, 1]) < c["reinit"], fresh, x0)
            if c["sampler"] == "mala":
                xn, acc = L.mala(net, x0, gen, c["chain_steps"], eta, k)
                logs["acc"] = acc
            else:
                xn = L.ula(net, x0, gen, c["chain_steps"], eta, k)
            buf.scatter_nd_update(idx[:, None], xn)
        elif c["method"] == "dist":
            x0 = starts(tf.random.shuffle(xp), B)
            xn = tf.concat([x0, xp], 0)
        elif c["method"] == "is":
            z = gen.normal([c["is_m"], 64])
            xflat = mu + tf.matmul(z, Lc, transpose_b=True)
            logq = -0.5 * tf.reduce_sum(z ** 2, 1) - 0.5 * logdet - 32 * np.log(2 * np.pi)
            xn = tf.reshape(xflat, [-1, 8, 8, 1])
        with tf.GradientTape() as tape:
            fp = net(xp, training=True)[:, 0]
            fn = net(xn, training=True)[:, 0]
            if c["method"] in ("hkr", "hkr_chain"):
                loss, hinge, kr = L.hkr_loss(fp, fn, c["margin"], c["lbda"])
                if c["method"] == "hkr_chain" and c["reg"] > 0:
                    loss += c["reg"] * L.cd_loss(k * fp, k * fn)
                logs.update(hinge=hinge, kr=kr)
            elif c["method"] == "ml":
                loss = L.cd_loss(k * fp, k * fn, c["reg"])
            elif c["method"] == "dist":
                xf = tf.reshape(xn, [tf.shape(xn)[0], -1])
                d2 = tf.reduce_sum(xf ** 2, 1, keepdims=True) - 2 * tf.matmul(xf, S, transpose_b=True) + tf.reduce_sum(S ** 2, 1)[None]
                target = tf.sqrt(tf.maximum(tf.reduce_min(d2, 1), 0.0) + 1e-8)
                err = fn - target
                loss = tf.reduce_mean(tf.keras.losses.huber(target[:, None], fn[:, None], delta=0.1)) if c["dist_loss"] == "huber" else tf.reduce_mean(tf.abs(err))
                logs["abs_err"] = tf.reduce_mean(tf.abs(err))
            elif c["method"] == "is":
                lw = -k * fn - logq
                logZ = tf.reduce_logsumexp(lw) - np.log(float(c["is_m"]))
                loss = k * tf.reduce_mean(fp) + logZ
                w = tf.nn.softmax(lw)
                logs["ess"] = 1.0 / tf.reduce_sum(w ** 2)
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        logs.update(loss=loss, f_pos=tf.reduce_mean(fp), f_neg=tf.reduce_mean(fn))
        return logs

    t0 = time.time()
    it = 0
    hist = []
    while it < c["steps"] and time.time() - t0 < c["max_seconds"]:
        logs = step(tf.constant(it, tf.int64))
        if it % 250 == 0 or it == c["steps"] - 1:
            hist.append({kk: float(v) for kk, v in logs.items()} | {"it": it, "t": time.time() - t0})
        it += 1
    secs = time.time() - t0
    net(xc[:2], training=True)  # refresh the cached constrained kernels (wbar)
    f_eval = np.concatenate([net(x_eval[i:i + 256], training=False).numpy()[:, 0] for i in range(0, len(x_eval), 256)])
    gmax = {}
    for nm, arr in (("train", x_cls), ("test", x_eval)):
        _, g = L.f_and_grad(net, tf.constant(arr))
        gmax[nm] = float(tf.reduce_max(L.per_sample_norm(g)))
    return net, f_eval, dict(steps=it, seconds=secs, grad_max=gmax, hist=hist, buf=buf)


def main():
    name, cfg = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    split = sys.argv[3] if len(sys.argv) > 3 else "test"
    classes = json.loads(sys.argv[4]) if len(sys.argv) > 4 else list(range(10))
    c = dict(DEFAULT, **cfg)
    xtr, ytr, xte, yte = get_split(split)
    per, energies = [], {}
    for cls in classes:
        net, f, info = train_class(c, xtr[ytr == cls], xte)
        r = scores_report(f, yte, cls, k=1.0)  # f units: certified needs f_out - f_in > 2 eps
        r.update(steps=info["steps"], seconds=info["seconds"], grad_max_train=info["grad_max"]["train"],
                 grad_max_test=info["grad_max"]["test"],
                 f_in_mean=float(f[yte == cls].mean()), f_out_mean=float(f[yte != cls].mean()))
        per.append(r)
        energies[str(cls)] = f.tolist()
        print(f"[{name}] class {cls}: auroc={r['auroc']:.4f} cert0.1={r['cert_0.1']:.4f} cert0.25={r['cert_0.25']:.4f} "
              f"cert0.5={r['cert_0.5']:.4f} steps={r['steps']} sec={r['seconds']:.0f} |grad|max={r['grad_max_test']:.3f} "
              f"f_in={r['f_in_mean']:.3f} f_out={r['f_out_mean']:.3f} last={info['hist'][-1]}", flush=True)
        if c.get("save_model"):
            net.save_weights(f"results/{name}_c{cls}.weights.h5")
            np.save(f"results/{name}_c{cls}_buffer.npy", info["buf"].numpy())
    m = summarise(per)
    print(f"[{name}] MEAN " + " ".join(f"{kk}={v:.4f}" for kk, v in m.items() if not kk.startswith("f_")), flush=True)
    save(f"results/{name}_{split}.json", dict(config=c, split=split, per_class=per, mean=m, f_test=energies))


if __name__ == "__main__":
    main()
