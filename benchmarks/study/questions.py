"""The cell runners: one function per kind of cell, each returning a JSON-able dict.

Kinds: ``stab2d`` (stability of PCD chains), ``gen2d`` (exact train and
held-out NLL against the training-set size), ``interp2d`` (landscape, gradient
field, E against the distance to the data, certified radii), ``digits``
(one-vs-rest digits: memorisation, held-out energy gap, certified and PGD
AUROC) and ``explain`` (one-vs-rest digits: saliency maps with a deletion test,
energy-descent counterfactuals judged by a nearest-neighbour classifier).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import spatial, stats

import deel_ebm
from benchmarks.study import conditions
from deel_ebm import certificates, datasets, metrics
from deel_ebm.app import runs

# isort: split
import tensorflow as tf

DENSITY = "8gaussians"
#: divergence thresholds of the stability cells
BLOWUP = 1e3  # |mean energy| of data or negatives beyond this: blow-up
FLIP = 1.0  # energy gap (e_neg - e_pos) below -FLIP ...
FLIP_CHECKS = 3  # ... at this many checks in a row after the warm-up: sign flip
WARMUP = 0.25  # share of the steps before the gap is judged
OUTSIDE = 0.5  # share of chain states outside the data domain
N_TEST = 5000
PGD_STEPS = 20
#: explanation cells (digits): images explained, energy-descent counterfactuals
EXPLAIN_N = 8  # in-class images (saliency) and out-of-class starts (counterfactuals)
CF_STEPS = 60  # normalised gradient-descent steps on E
CF_STEP = 0.1  # l2 length of one step: a path of at most CF_STEPS * CF_STEP
CF_SNAPSHOTS = (0, 10, 20, 40, 60)
DELETE_PIXELS = 8  # pixels switched off by the deletion test


def _finite(x):
    return x is not None and isinstance(x, float) and math.isfinite(x)


def _exact(model):
    """Exact 2D metrics, or None when the energy is not finite on the grid."""
    try:
        return metrics.exact_metrics_2d(runs.energy_fn(model), DENSITY)
    except (ValueError, FloatingPointError):
        return None


class _Monitor(tf.keras.callbacks.Callback):
    """Checks the divergence criteria every ``every`` steps and stops on the first."""

    def __init__(self, domain, every, warmup):
        super().__init__()
        self.domain, self.every, self.warmup = domain, every, warmup
        self.reason, self.step, self.gaps = None, None, []

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        step = int(self.model.optimizer.iterations.numpy())
        e_pos, e_neg = (
            float(logs.get("e_pos", np.nan)),
            float(logs.get("e_neg", np.nan)),
        )
        reason = None
        if not (math.isfinite(e_pos) and math.isfinite(e_neg)):
            reason = "non-finite"
        elif max(abs(e_pos), abs(e_neg)) > BLOWUP:
            reason = "blow-up"
        elif step % self.every == 0:
            self.gaps.append(e_neg - e_pos)
            states = self.model.buffer.storage.numpy()
            lo, hi = self.domain
            out = float(np.mean(np.any((states < lo) | (states > hi), axis=1)))
            if not np.all(np.isfinite(states)):
                reason = "non-finite"
            elif out > OUTSIDE:
                reason = "left-domain"
            elif (
                step >= self.warmup
                and all(g < -FLIP for g in self.gaps[-FLIP_CHECKS:])
                and len(self.gaps) >= FLIP_CHECKS
            ):
                reason = "gap-flip"
        if reason is not None and self.reason is None:
            self.reason, self.step = reason, step
            self.model.stop_training = True


def stab2d(cell, budget):
    """PCD chains (ULA at step eta, CD loss, replay buffer): divergence and KL."""
    seed, eta, lr = cell["seed"], cell["eta"], cell["lr"]
    density = datasets.get_density(DENSITY)
    x_train, _ = datasets.load_2d(DENSITY, budget["stab_n"], 10, seed)
    tf.keras.utils.set_random_seed(seed)
    model = conditions.build_model(
        cell["condition"],
        (2,),
        budget["stab_units"],
        seed,
        lr,
        scheme="pcd",
        sampler=deel_ebm.LangevinSampler(num_steps=budget["stab_chain"], step_size=eta),
        buffer=deel_ebm.ReplayBuffer(
            capacity=budget["stab_n"], domain=density.domain, seed=seed
        ),
    )
    monitor = _Monitor(
        density.domain, budget["stab_every"], WARMUP * budget["stab_steps"]
    )
    batch = budget["stab_batch"]
    epochs = math.ceil(budget["stab_steps"] * batch / len(x_train))
    model.fit(x_train, batch_size=batch, epochs=epochs, verbose=0, callbacks=[monitor])
    if model.stop_reason and monitor.reason is None:
        monitor.reason = "non-finite"
        monitor.step = int(model.optimizer.iterations.numpy())
    steps = int(model.optimizer.iterations.numpy())
    m = _exact(model) if monitor.reason is None else None
    kl = None if m is None else m["kl"]
    if monitor.reason is None and not _finite(kl):
        monitor.reason, monitor.step = "non-finite", steps
    return {
        "diverged": monitor.reason is not None,
        "reason": monitor.reason,
        "divergence_step": monitor.step,
        "steps": steps,
        "kl": kl,
        "k": float(model.k_coef_lip),
        "drift_bound": eta * float(model.k_coef_lip)
        if cell["condition"] in conditions.CERTIFIED
        else None,
        "final_gap": monitor.gaps[-1] if monitor.gaps else None,
    }


def _train_default(cell, budget, x_train, steps_key):
    seed = cell["seed"]
    tf.keras.utils.set_random_seed(seed)
    model = conditions.build_model(
        cell["condition"], (2,), budget["units_2d"], seed, budget["lr_2d"]
    )
    batch = min(budget["batch_2d"], len(x_train))
    steps = budget[steps_key]
    per_epoch = math.ceil(len(x_train) / batch)
    model.fit(x_train, batch_size=batch, epochs=math.ceil(steps / per_epoch), verbose=0)
    return model


def gen2d(cell, budget):
    """Exact train and held-out NLL (and KL) of the default scheme at n points."""
    x_train, x_test = datasets.load_2d(DENSITY, cell["n"], N_TEST, cell["seed"])
    model = _train_default(cell, budget, x_train, "gen_steps")
    fn = runs.energy_fn(model)
    m = metrics.exact_metrics_2d(fn, DENSITY, x_test=x_test)
    train_nll = float(np.mean(fn(x_train)) + m["log_z"])
    return {
        "train_nll": train_nll,
        "test_nll": m["test_nll"],
        "data_test_nll": m["data_test_nll"],
        "gap_nll": m["test_nll"] - train_nll,
        "kl": m["kl"],
        "reverse_kl": m["reverse_kl"],
        "k": float(model.k_coef_lip),
    }


def _grad_field(model, points):
    x = tf.constant(points, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        e = model(x, training=False)
    return tape.gradient(e, x).numpy()


def interp2d(cell, budget):
    """Landscape, gradient field, Spearman(E, distance to data), certified radii."""
    seed = cell["seed"]
    density = datasets.get_density(DENSITY)
    x_train, x_test = datasets.load_2d(DENSITY, budget["interp_n"], N_TEST, seed)
    model = _train_default(cell, budget, x_train, "interp_steps")
    model.refresh_constraints()
    fn = runs.energy_fn(model)
    res = budget["interp_res"]
    grid, _ = metrics.exact2d.grid_points(density.domain, res)
    e_grid = fn(grid)
    dist = spatial.cKDTree(x_train).query(grid)[0]
    rho = stats.spearmanr(e_grid, dist).statistic
    # the gradient field on a coarse grid (arrows), its norms on the fine grid
    coarse, _ = metrics.exact2d.grid_points(density.domain, budget["interp_arrows"])
    g_coarse = _grad_field(model, coarse)
    g_norm = np.linalg.norm(_grad_field(model, grid), axis=1)
    k_cert = conditions.certified_k(model, cell["condition"])
    half = len(x_test) // 2
    t = certificates.calibrate_threshold(fn(x_test[:half]))
    radii = certificates.certified_radius(fn(x_test[half:]), t, k_cert)
    return {
        "spearman_e_dist": float(rho),
        "k": float(model.k_coef_lip),
        "k_certified": k_cert,
        "grad_norm_max": float(g_norm.max()),
        "grad_norm_median": float(np.median(g_norm)),
        "radii_quantiles": [float(q) for q in np.quantile(radii, [0.1, 0.25, 0.5])],
        "radius_median": float(np.median(radii)),
        "res": res,
        "energy_grid": np.round(e_grid - e_grid.min(), 3).tolist(),
        "arrows_res": budget["interp_arrows"],
        "grad_coarse": np.round(g_coarse, 3).tolist(),
    }


def _pgd(model, x, eps, sign):
    """l2 PGD on the energy: ``sign=+1`` raises it (in-class points), -1 lowers it."""
    if eps == 0:
        return x
    x0 = tf.constant(x, tf.float32)
    xa = tf.identity(x0)
    step = 2.5 * eps / PGD_STEPS
    flat = [-1, int(np.prod(x.shape[1:]))]
    for _ in range(PGD_STEPS):
        with tf.GradientTape() as tape:
            tape.watch(xa)
            e = model(xa, training=False)
        g = tf.reshape(tape.gradient(e, xa), flat)
        g = g / (tf.norm(g, axis=1, keepdims=True) + 1e-12)
        xa = xa + sign * step * tf.reshape(g, tf.shape(xa))
        d = tf.reshape(xa - x0, flat)
        scale = tf.minimum(1.0, eps / (tf.norm(d, axis=1, keepdims=True) + 1e-12))
        xa = x0 + tf.reshape(d * scale, tf.shape(xa))
    return xa.numpy()


def _train_digits(cell, budget):
    """The one-vs-rest digits model of a cell, trained, and its data splits."""
    seed, digit = cell["seed"], cell["digit"]
    data = datasets.load_digits(seed=seed)
    x_train = data.x_train[data.y_train == digit]
    x_in = data.x_test[data.y_test == digit]
    x_out = data.x_test[data.y_test != digit][: budget["digits_n_out"]]
    tf.keras.utils.set_random_seed(seed)
    k_ref = conditions.k_arguments(cell["condition"])["k_coef_lip"]
    step = budget["digits_drift"] / max(k_ref, 1.0)
    model = conditions.build_model(
        cell["condition"],
        (8, 8, 1),
        budget["digits_units"],
        seed,
        budget["digits_lr"],
        sampler=deel_ebm.LangevinSampler(
            num_steps=budget["digits_chain"], step_size=step
        ),
        buffer=deel_ebm.ReplayBuffer(
            capacity=1000, domain=datasets.DIGITS_DOMAIN, seed=seed
        ),
    )
    batch = budget["digits_batch"]
    per_epoch = math.ceil(len(x_train) / batch)
    epochs = math.ceil(budget["digits_steps"] / per_epoch)
    model.fit(x_train, batch_size=batch, epochs=epochs, verbose=0)
    model.refresh_constraints()
    return model, data, x_train, x_in, x_out


def digits(cell, budget):
    """One-vs-rest digits: memorisation, held-out gap, certified vs PGD AUROC."""
    seed = cell["seed"]
    model, _, x_train, x_in, x_out = _train_digits(cell, budget)
    fn = runs.energy_fn(model)
    samples = model.sample(budget["digits_samples"], seed=seed).numpy()
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    d_train = spatial.cKDTree(flat(x_train)).query(flat(samples))[0]
    d_test = spatial.cKDTree(flat(x_in)).query(flat(samples))[0]
    e_train, e_in, e_out = fn(x_train), fn(x_in), fn(x_out)
    k_cert = conditions.certified_k(model, cell["condition"])
    rows = []
    for eps in budget["digits_eps"]:
        a_in = _pgd(model, x_in, eps, +1.0)
        a_out = _pgd(model, x_out, eps, -1.0)
        emp = metrics.auroc(fn(a_in), fn(a_out))
        cert = certificates.certified_auroc(e_in, e_out, k_cert, eps)
        rows.append({"eps": eps, "empirical": emp, "certified": cert})
    return {
        "k": float(model.k_coef_lip),
        "k_certified": k_cert,
        "auroc_clean": metrics.auroc(e_in, e_out),
        "attacks": rows,
        "bound_holds": all(r["certified"] <= r["empirical"] + 1e-9 for r in rows),
        "nn_train_mean": float(np.mean(d_train)),
        "nn_test_mean": float(np.mean(d_test)),
        "memorisation_ratio": float(np.mean(d_train) / np.mean(d_test)),
        "heldout_gap": float(np.mean(e_in) - np.mean(e_train)),
        "sample_images": np.round(samples[:8].reshape(8, 64), 3).tolist(),
        "samples_finite": bool(np.all(np.isfinite(samples))),
    }


def _energy_and_grad(model, x):
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        e = model(x, training=False)
    return e.numpy(), tape.gradient(e, x).numpy()


def _descend(model, x, lo, hi):
    """Normalised gradient descent on E inside the domain: the snapshots at
    ``CF_SNAPSHOTS`` and the largest gradient norm met on the way."""
    snaps, cur, gmax = [x], x, 0.0
    for t in range(1, CF_STEPS + 1):
        _, g = _energy_and_grad(model, cur)
        gf = g.reshape(len(g), -1)
        norm = np.linalg.norm(gf, axis=1, keepdims=True)
        gmax = max(gmax, float(norm.max()))
        cur = np.clip(cur - CF_STEP * (gf / (norm + 1e-12)).reshape(cur.shape), lo, hi)
        if t in CF_SNAPSHOTS:
            snaps.append(cur)
    return snaps, gmax


def _deletion_ratio(model, x, grad, lo, rng):
    """Energy rise when the DELETE_PIXELS pixels that the gradient ranks first
    are switched off (set to ``lo``), over the rise for as many random lit pixels."""
    flat = x.reshape(len(x), -1)
    first_order = grad.reshape(len(x), -1) * (lo - flat)  # dE of switching a pixel off
    lit = flat > lo + 1e-6
    e0, _ = _energy_and_grad(model, x)
    by_grad, by_rand = flat.copy(), flat.copy()
    for i in range(len(x)):
        on = np.flatnonzero(lit[i])
        m = min(DELETE_PIXELS, len(on))
        top = on[np.argsort(-first_order[i, on])[:m]]
        by_grad[i, top] = lo
        by_rand[i, rng.choice(on, size=m, replace=False)] = lo
    e_grad, _ = _energy_and_grad(model, by_grad.reshape(x.shape))
    e_rand, _ = _energy_and_grad(model, by_rand.reshape(x.shape))
    rise_grad, rise_rand = float(np.mean(e_grad - e0)), float(np.mean(e_rand - e0))
    return rise_grad, rise_rand


def explain(cell, budget):
    """Saliency and energy-descent counterfactuals of a one-vs-rest digits model.

    Saliency is ∇x E on in-class test digits; its deletion test switches off the
    pixels the gradient ranks first and compares the energy rise with as many
    random lit pixels. A counterfactual descends E from an out-of-class test digit
    by ``CF_STEPS`` normalised steps; it *succeeds* when the nearest training
    image (all classes, 1-NN) of its end point is of the modelled digit, and
    *reaches the class* when its energy is below the in-class test median.
    """
    seed, digit = cell["seed"], cell["digit"]
    model, data, x_train, x_in, x_out = _train_digits(cell, budget)
    lo, hi = datasets.DIGITS_DOMAIN
    rng = np.random.default_rng(seed)
    n = min(EXPLAIN_N, len(x_in))
    x_sal = x_in[:n]
    _, grad = _energy_and_grad(model, x_sal)
    rise_grad, rise_rand = _deletion_ratio(model, x_sal, grad, lo, rng)
    # one start of every other class first, so the pictures show several digits
    y_out = data.y_test[data.y_test != digit][: len(x_out)]
    firsts = [int(np.flatnonzero(y_out == c)[0]) for c in np.unique(y_out)]
    rest = [i for i in range(len(y_out)) if i not in firsts]
    starts_idx = (firsts + rest)[:EXPLAIN_N]
    x_start = x_out[starts_idx]
    snaps, gmax = _descend(model, x_start, lo, hi)
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    tree_all = spatial.cKDTree(flat(data.x_train))
    tree_in = spatial.cKDTree(flat(x_train))
    nn_label = lambda a: data.y_train[tree_all.query(flat(a))[1]]  # noqa: E731
    e_in = runs.energy_fn(model)(x_in)
    e_end, _ = _energy_and_grad(model, snaps[-1])
    return {
        "k": float(model.k_coef_lip),
        "k_certified": conditions.certified_k(model, cell["condition"]),
        "saliency_images": np.round(flat(x_sal[:4]), 3).tolist(),
        "saliency_maps": np.round(flat(grad[:4]), 4).tolist(),
        "deletion_rise_saliency": rise_grad,
        "deletion_rise_random": rise_rand,
        "cf_snapshot_steps": list(CF_SNAPSHOTS),
        "cf_images": [np.round(flat(s[:4]), 3).tolist() for s in snaps],
        "cf_start_labels": [int(v) for v in y_out[starts_idx][:4]],
        "cf_success_start": float(np.mean(nn_label(x_start) == digit)),
        "cf_success": float(np.mean(nn_label(snaps[-1]) == digit)),
        "cf_reaches_class": float(np.mean(e_end <= np.median(e_in))),
        "cf_distance": float(
            np.mean(np.linalg.norm(flat(snaps[-1] - x_start), axis=1))
        ),
        "cf_nn_in_start": float(np.mean(tree_in.query(flat(x_start))[0])),
        "cf_nn_in_end": float(np.mean(tree_in.query(flat(snaps[-1]))[0])),
        "cf_grad_norm_max": gmax,
    }


RUNNERS = {
    "stab2d": stab2d,
    "gen2d": gen2d,
    "interp2d": interp2d,
    "digits": digits,
    "explain": explain,
}
