"""Render the report (Markdown and LaTeX) and its figures from the cached cells.

Every number of the report is computed here from the cell JSONs; the prose
lives in the templates ``report.md.tmpl`` and ``report.tex.tmpl`` (placeholders
``%%name``).
"""

from __future__ import annotations

import json
import shutil
import string
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.study import conditions, discussion, grid
from benchmarks.study.stats import fmt_mean, fmt_share, mean_ci, share_ci

HERE = Path(__file__).resolve().parent
CONDS = conditions.CONDITIONS
UNCONSTRAINED = conditions.UNCONSTRAINED


class _Template(string.Template):
    delimiter = "%%"


# ----------------------------------------------------------------- loading
def load_cells(cells_dir, settings):
    """Records in ``cells_dir`` computed with ``settings`` (by tag and hash)."""
    tag, h = settings["tag"], grid.settings_hash(settings)
    out = []
    for p in sorted(Path(cells_dir).glob(f"{tag}_{h}_*.json")):
        out.append(json.loads(p.read_text()))
    return out


def _by_kind(records):
    kinds = defaultdict(list)
    for r in records:
        kinds[r["cell"]["kind"]].append(r)
    return kinds


def _commit():
    try:
        root = HERE.parents[1]
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "benchmarks/study", "deel_ebm"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ------------------------------------------------------------------ tables
TEX = {
    "\\": "\\textbackslash{}",
    "%": "\\%",
    "_": "\\_",
    "&": "\\&",
    "#": "\\#",
    "^": "\\^{}",
    "±": "\\ensuremath{\\pm}",
    "–": "--",
    "—": "---",
    "η": "\\ensuremath{\\eta}",
    "ε": "\\ensuremath{\\varepsilon}",
    "‖": "\\ensuremath{\\|}",
    "∇": "\\ensuremath{\\nabla}",
    "→": "\\ensuremath{\\to}",
    "ℓ": "\\ensuremath{\\ell}",
    "≈": "\\ensuremath{\\approx}",
    "≤": "\\ensuremath{\\le}",
    "≥": "\\ensuremath{\\ge}",
    "∝": "\\ensuremath{\\propto}",
    "−": "-",
    "×": "\\ensuremath{\\times}",
    "|": "\\textbar{}",
}


def tex_escape(text):
    """Plain text (with a few Unicode symbols) as LaTeX."""
    return "".join(TEX.get(ch, ch) for ch in text.replace("||", "‖"))


class Table:
    def __init__(self, header, rows, caption):
        self.header, self.rows, self.caption = header, rows, caption

    def md(self):
        lines = ["| " + " | ".join(self.header) + " |"]
        lines.append("|" + "---|" * len(self.header))
        lines += [
            "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
            for r in self.rows
        ]
        return f"*{self.caption}*\n\n" + "\n".join(lines)

    def tex(self):
        esc = tex_escape
        cols = "l" + "r" * (len(self.header) - 1)
        body = [" & ".join(esc(h) for h in self.header) + r" \\ \hline"]
        body += [" & ".join(esc(c) for c in r) + r" \\" for r in self.rows]
        return (
            "\\begin{table}[ht]\\centering\\scriptsize\n"
            f"\\caption{{{esc(self.caption)}}}\n"
            "\\begin{adjustbox}{max width=\\linewidth}\n"
            f"\\begin{{tabular}}{{{cols}}}\\hline\n"
            + "\n".join(body)
            + "\n\\hline\\end{tabular}\\end{adjustbox}\\end{table}"
        )


def _group(records, *keys):
    g = defaultdict(list)
    for r in records:
        g[tuple(r["cell"][k] for k in keys)].append(r)
    return g


def stability_tables(recs):
    etas = sorted({r["cell"]["eta"] for r in recs})
    g = _group(recs, "condition", "eta")
    rows = []
    for c in CONDS:
        row = [c]
        for eta in etas:
            rs = g.get((c, eta), [])
            row.append(fmt_share(sum(r["result"]["diverged"] for r in rs), len(rs)))
        rows.append(row)
    t1 = Table(
        ["condition"] + [f"η={e:g}" for e in etas],
        rows,
        "Stability (PCD chains): runs diverged / runs, with the 95 % Wilson interval, "
        "per step size η (all seeds and learning rates pooled).",
    )
    gc = _group(recs, "condition")
    rows = []
    for c in CONDS:
        rs = gc.get((c,), [])
        if not rs:
            rows.append([c, "–", "–", "–", "–", "–"])
            continue
        div = [r for r in rs if r["result"]["diverged"]]
        reasons = defaultdict(int)
        for r in div:
            reasons[r["result"]["reason"]] += 1
        kls = [r["result"]["kl"] for r in rs if not r["result"]["diverged"]]
        steps = [r["result"]["divergence_step"] for r in div]
        var = np.var(kls, ddof=1) if len(kls) > 1 else None
        rows.append(
            [
                c,
                fmt_share(len(div), len(rs)),
                ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none",
                fmt_mean(steps, 3),
                fmt_mean(kls, 3),
                "–" if var is None else f"{var:.3g}",
            ]
        )
    t2 = Table(
        [
            "condition",
            "diverged",
            "why",
            "step of divergence",
            "final KL (kept runs)",
            "var KL",
        ],
        rows,
        "Stability per condition: divergence share, criteria that fired, the step at "
        "which they fired, and the exact KL(data||model) of the runs that did not "
        "diverge (mean ± 95 % t interval over runs; variance across runs).",
    )
    return t1, t2


def drift_table(recs):
    """Divergence of the certified conditions against the drift bound eta*k."""
    g = defaultdict(list)
    for r in recs:
        d = r["result"]["drift_bound"]
        if d is not None:
            g[float(f"{d:.1g}")].append(r["result"]["diverged"])
    rows = []
    for d in sorted(g):
        v = g[d]
        rows.append([f"≈{d:g}", fmt_share(sum(v), len(v))])
    return Table(
        ["drift bound ηk", "diverged"],
        rows,
        "Certified conditions only: divergence share against the largest possible "
        "drift of one Langevin step, ηk (the energy is k-Lipschitz; rounded to one "
        "significant digit, which bins the learned k with its neighbours).",
    )


def gen_table(recs):
    sizes = sorted({r["cell"]["n"] for r in recs})
    g = _group(recs, "condition", "n")
    rows = []
    for c in CONDS:
        for n in sizes:
            rs = g.get((c, n), [])
            if not rs:
                continue
            res = [r["result"] for r in rs]
            rows.append(
                [
                    c,
                    str(n),
                    fmt_mean([x["train_nll"] for x in res]),
                    fmt_mean([x["test_nll"] for x in res]),
                    fmt_mean([x["gap_nll"] for x in res]),
                    fmt_mean([x["kl"] for x in res]),
                ]
            )
    ref = [r["result"]["data_test_nll"] for r in recs]
    ref_text = fmt_mean(ref, 4)
    return Table(
        ["condition", "n", "train NLL", "held-out NLL", "held-out − train", "KL"],
        rows,
        "Generalisation in 2D (8 Gaussians, default scheme): exact NLL on the n "
        "training points and on 5 000 held-out points (nats, mean ± 95 % t interval "
        f"over seeds). The true density's held-out NLL is {ref_text}.",
    )


def digits_gen_table(recs):
    g = _group(recs, "condition")
    rows = []
    for c in CONDS:
        rs = [r["result"] for r in g.get((c,), [])]
        if not rs:
            continue
        rows.append(
            [
                c,
                fmt_mean([x["nn_train_mean"] for x in rs]),
                fmt_mean([x["nn_test_mean"] for x in rs]),
                fmt_mean([x["memorisation_ratio"] for x in rs]),
                fmt_mean([x["heldout_gap"] for x in rs]),
            ]
        )
    return Table(
        [
            "condition",
            "sample→nearest train",
            "sample→nearest test",
            "ratio",
            "held-out energy gap",
        ],
        rows,
        "Digits one-class models: mean ℓ2 distance of samples to the nearest training "
        "image and to the nearest held-out image of the class (ratio < 1: samples "
        "closer to the training set, memorisation), and the held-out energy gap "
        "mean E(test) − mean E(train).",
    )


def interp_table(recs):
    g = _group(recs, "condition")
    rows = []
    for c in CONDS:
        rs = [r["result"] for r in g.get((c,), [])]
        if not rs:
            continue
        rows.append(
            [
                c,
                fmt_mean([x["spearman_e_dist"] for x in rs]),
                fmt_mean([x["grad_norm_max"] for x in rs]),
                fmt_mean([x["k_certified"] for x in rs]),
                fmt_mean([x["radius_median"] for x in rs]),
                " / ".join(
                    f"{np.mean([x['radii_quantiles'][i] for x in rs]):.3g}"
                    for i in range(3)
                ),
            ]
        )
    return Table(
        [
            "condition",
            "Spearman(E, distance)",
            "max ‖∇E‖ (grid)",
            "certified k",
            "median certified radius",
            "radius quantiles 10 / 25 / 50 %",
        ],
        rows,
        "Interpretability in 2D: Spearman correlation of E with the distance to the "
        "nearest training point over the grid; the largest gradient norm measured on "
        "the grid against the Lipschitz constant a certificate may use (k for "
        "deel-lip nets, k times the product of layer norms otherwise); the median "
        "certified radius of held-out points at a threshold rejecting 5 % of "
        "validation points, and the distribution of those radii (quantiles, mean "
        "over seeds; signed: a rejected held-out point has a negative radius).",
    )


def explain_table(recs):
    g = _group(recs, "condition")
    rows = []
    for c in CONDS:
        rs = [r["result"] for r in g.get((c,), [])]
        if not rs:
            continue
        rows.append(
            [
                c,
                fmt_mean([x["cf_success"] for x in rs]),
                fmt_mean([x["cf_reaches_class"] for x in rs]),
                fmt_mean([x["cf_distance"] for x in rs]),
                fmt_mean([x["cf_nn_in_end"] for x in rs]),
                fmt_mean([discussion.deletion_ratio(x) for x in rs]),
                fmt_mean([x["cf_grad_norm_max"] / x["k_certified"] for x in rs]),
            ]
        )
    q = _q()
    return Table(
        [
            "condition",
            "counterfactual success",
            "reaches class energy",
            "ℓ2 moved",
            "end: distance to nearest class image",
            "deletion: saliency / random",
            "max ‖∇E‖ on the path / certified k",
        ],
        rows,
        f"Interpretability on digits (one-vs-rest; every cell of both classes and "
        f"all seeds pooled). A counterfactual descends E from an out-of-class test "
        f"digit by {q.CF_STEPS} normalised steps of ℓ2 length {q.CF_STEP:g}; it "
        f"succeeds when its end point's nearest training image (all ten classes) is "
        f"of the modelled digit (no start does), and reaches the class when its "
        f"energy is below the median energy of in-class test digits. Deletion: the "
        f"energy rise when the {q.DELETE_PIXELS} lit pixels that the gradient ranks "
        f"first are switched off, over the rise for as many random lit pixels (above "
        f"1: the saliency map points at what the energy uses). The last column is "
        f"at most 1 for an energy whose certificate holds.",
    )


def robust_table(recs):
    g = _group(recs, "condition")
    rows = []
    for c in CONDS:
        rs = [r["result"] for r in g.get((c,), [])]
        if not rs:
            continue
        row = [c, fmt_mean([x["auroc_clean"] for x in rs])]
        for i, _ in enumerate(rs[0]["attacks"]):
            emp = [x["attacks"][i]["empirical"] for x in rs]
            cert = [x["attacks"][i]["certified"] for x in rs]
            row.append(f"{fmt_mean(cert)} / {fmt_mean(emp)}")
        row.append(f"{sum(x['bound_holds'] for x in rs)}/{len(rs)}")
        rows.append(row)
    eps = [a["eps"] for a in recs[0]["result"]["attacks"]] if recs else []
    return Table(
        ["condition", "clean AUROC"]
        + [f"ε={e:g}: certified / PGD" for e in eps]
        + ["certificate ≤ PGD"],
        rows,
        "Robustness, digits one-vs-rest (in-class test images vs other classes, "
        "energy as the OOD score): certified AUROC at radius ε against the empirical "
        "AUROC after an ℓ2 PGD attack on the energy (20 steps); last column: runs "
        "where the certificate is below the attacked AUROC at every ε.",
    )


# ----------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLORS = dict(
    zip(
        CONDS,
        [
            "#08306b",
            "#2171b5",
            "#4292c6",
            "#9ecae1",
            "#6a51a3",
            "#d62728",
            "#ff7f0e",
            "#31a354",
            "#8c564b",
        ],
    )
)
#: one marker per condition, so overlapping curves stay identifiable
MARKERS = dict(zip(CONDS, ["o", "s", "^", "D", "v", "o", "s", "^", "D"]))


def fig_stability(recs, path):
    plt = _plt()
    etas = sorted({r["cell"]["eta"] for r in recs})
    g = _group(recs, "condition", "eta")
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in CONDS:
        ys = []
        for eta in etas:
            rs = g.get((c, eta), [])
            ys.append(share_ci(sum(r["result"]["diverged"] for r in rs), len(rs))[0])
        ys = [np.nan if y is None else y for y in ys]
        style = "-" if c in conditions.CERTIFIED else "--"
        ax.plot(
            etas,
            ys,
            style,
            marker=MARKERS[c],
            color=COLORS[c],
            label=c,
            mfc="none" if c == "lip-learnk" else None,
            ms=8 if c == "lip-learnk" else 6,
        )
    ax.set_xscale("log")
    ax.set_xlabel("Langevin step size η")
    ax.set_ylabel("share of runs diverged")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Stability of PCD training (solid: certified Lipschitz)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig_generalisation(recs, path):
    plt = _plt()
    sizes = sorted({r["cell"]["n"] for r in recs})
    g = _group(recs, "condition", "n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for c in CONDS:
        tr = [
            mean_ci([r["result"]["train_nll"] for r in g.get((c, n), [])])[0]
            for n in sizes
        ]
        te = [
            mean_ci([r["result"]["test_nll"] for r in g.get((c, n), [])])[0]
            for n in sizes
        ]
        tr = [np.nan if v is None else v for v in tr]
        te = [np.nan if v is None else v for v in te]
        style = "-" if c in conditions.CERTIFIED else "--"
        axes[0].plot(sizes, te, style, marker=MARKERS[c], color=COLORS[c], label=c)
        axes[1].plot(
            sizes, np.subtract(te, tr), style, marker=MARKERS[c], color=COLORS[c]
        )
    ref = mean_ci([r["result"]["data_test_nll"] for r in recs])[0]
    if ref is not None:
        axes[0].axhline(ref, color="k", lw=0.8, ls=":", label="true density")
    # a condition far above the others would flatten every other curve: clip
    # the axis at 3x the spread of the rest and say who is off the scale
    finals = {
        c: mean_ci(
            [r["result"]["test_nll"] for r in recs if r["cell"]["condition"] == c]
        )[0]
        for c in CONDS
    }
    finals = {c: v for c, v in finals.items() if v is not None}
    if len(finals) > 2 and ref is not None:
        order = sorted(finals, key=finals.get)
        rest = [finals[c] for c in order[:-1]]
        top = max(rest) + 0.5 * (max(rest) - ref)
        if finals[order[-1]] > top + 2 * (max(rest) - ref):
            axes[0].set_ylim(ref - 0.1 * (top - ref), top)
            axes[0].text(
                0.02,
                0.97,
                f"{order[-1]} off the scale (≈{finals[order[-1]]:.3g} nats)",
                transform=axes[0].transAxes,
                va="top",
                fontsize=8,
            )
    from matplotlib.ticker import NullFormatter

    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(n) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training points n")
    axes[0].set_ylabel("held-out NLL (nats)")
    axes[1].set_ylabel("held-out NLL − train NLL")
    axes[0].set_title("Held-out NLL (exact)")
    axes[1].set_title("Generalisation gap")
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig_landscapes(recs, path):
    plt = _plt()
    g = _group(recs, "condition")
    fig, axes = plt.subplots(2, len(CONDS), figsize=(2.0 * len(CONDS), 4.4))
    lo, hi = -4.5, 4.5
    for j, c in enumerate(CONDS):
        rs = sorted(g.get((c,), []), key=lambda r: r["cell"]["seed"])
        for i in range(2):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[0, j].set_title(c, fontsize=9)
        if not rs:
            continue
        res = rs[0]["result"]
        e = np.asarray(res["energy_grid"]).reshape(res["res"], res["res"])
        axes[0, j].imshow(
            np.exp(-(e - e.min())),
            origin="lower",
            extent=(lo, hi, lo, hi),
            cmap="viridis",
        )
        axes[1, j].imshow(e, origin="lower", extent=(lo, hi, lo, hi), cmap="magma")
        a = res["arrows_res"]
        xs = lo + (np.arange(a) + 0.5) * (hi - lo) / a
        gx, gy = np.meshgrid(xs, xs, indexing="xy")
        gr = np.asarray(res["grad_coarse"]).reshape(a, a, 2)
        axes[1, j].quiver(gx, gy, -gr[..., 0], -gr[..., 1], color="w", width=0.006)
    axes[0, 0].set_ylabel("density e^(−E)", fontsize=9)
    axes[1, 0].set_ylabel("E and −∇E", fontsize=9)
    fig.suptitle(
        "8 Gaussians, seed 0: learned density (top), energy and its descent "
        "field (bottom)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig_robustness(recs, path):
    plt = _plt()
    g = _group(recs, "condition")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for c in CONDS:
        rs = [r["result"] for r in g.get((c,), [])]
        if not rs:
            continue
        eps = [0.0] + [a["eps"] for a in rs[0]["attacks"]]
        emp = [np.mean([x["auroc_clean"] for x in rs])] + [
            np.mean([x["attacks"][i]["empirical"] for x in rs])
            for i in range(len(eps) - 1)
        ]
        cert = [np.mean([x["auroc_clean"] for x in rs])] + [
            np.mean([x["attacks"][i]["certified"] for x in rs])
            for i in range(len(eps) - 1)
        ]
        ax = axes[0] if c in conditions.CERTIFIED else axes[1]
        ax.plot(eps, emp, "-", marker=MARKERS[c], color=COLORS[c], label=f"{c} PGD")
        ax.plot(
            eps,
            cert,
            ":",
            marker=MARKERS[c],
            mfc="none",
            color=COLORS[c],
            label=f"{c} certified",
        )
    axes[0].set_title("deel-lip energies")
    axes[1].set_title("unconstrained / soft (bound: layer-norm product)")
    for ax in axes:
        ax.set_xlabel("ℓ2 radius ε")
        ax.legend(fontsize=6, ncol=2)
    axes[0].set_ylabel("AUROC (digit vs rest)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig_digits(recs, path):
    plt = _plt()
    g = _group(recs, "condition")
    fig, axes = plt.subplots(len(CONDS), 8, figsize=(6.4, 0.85 * len(CONDS)))
    for i, c in enumerate(CONDS):
        rs = sorted(g.get((c,), []), key=lambda r: r["cell"]["seed"])
        imgs = rs[0]["result"]["sample_images"] if rs else []
        for j in range(8):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(
                    np.asarray(imgs[j]).reshape(8, 8), cmap="gray_r", vmin=-1, vmax=1
                )
        axes[i, 0].set_ylabel(c, rotation=0, ha="right", fontsize=8)
    fig.suptitle(
        "Digits one-class samples (seed 0, class %s)"
        % (recs[0]["cell"]["digit"] if recs else "?"),
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig_explain(recs, path):
    """Per condition (rows): two in-class digits and their saliency maps, then
    one counterfactual path (seed 0, first class)."""
    plt = _plt()
    g = _group(recs, "condition")
    first = min((r["cell"]["seed"], r["cell"]["digit"]) for r in recs)
    conds = [c for c in CONDS if g.get((c,))]
    steps = recs[0]["result"]["cf_snapshot_steps"]
    ncol = 4 + len(steps)
    fig, axes = plt.subplots(
        len(conds),
        ncol,
        figsize=(0.82 * ncol + 0.8, 0.9 * len(conds) + 0.7),
        squeeze=False,
    )
    for i, c in enumerate(conds):
        r = next(
            (x for x in g[(c,)] if (x["cell"]["seed"], x["cell"]["digit"]) == first),
            g[(c,)][0],
        )["result"]
        panels = []
        for j in range(2):
            img = np.asarray(r["saliency_images"][j]).reshape(8, 8)
            sal = np.asarray(r["saliency_maps"][j]).reshape(8, 8)
            m = float(np.abs(sal).max()) or 1.0
            panels += [(img, "gray_r", -1, 1), (-sal, "RdBu_r", -m, m)]
        for snap in r["cf_images"]:
            panels.append((np.asarray(snap[0]).reshape(8, 8), "gray_r", -1, 1))
        for j, (a, cmap, lo, hi) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(a, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(c, rotation=0, ha="right", va="center", fontsize=8)
    heads = ["digit", "−∇E", "digit", "−∇E"] + [f"step {t}" for t in steps]
    for j, h in enumerate(heads):
        axes[0, j].set_title(h, fontsize=7)
    fig.suptitle(
        f"Digit {first[1]} model, seed {first[0]}: saliency (red: raising the pixel "
        f"lowers E) and an energy-descent counterfactual from a "
        f"{recs[0]['result']['cf_start_labels'][0]}",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FIGURES = {
    "stability": ("stab2d", fig_stability),
    "generalisation": ("gen2d", fig_generalisation),
    "landscapes": ("interp2d", fig_landscapes),
    "robustness": ("digits", fig_robustness),
    "digits_samples": ("digits", fig_digits),
    "explain": ("explain", fig_explain),
}


# ----------------------------------------------------------------- findings
def findings(kinds):
    """Sentences stating what the cached numbers show (computed, not written)."""
    out = []
    st = kinds.get("stab2d", [])
    if st:
        d1, n1 = discussion.diverged(st, conditions.CERTIFIED)
        d2, n2 = discussion.diverged(st, UNCONSTRAINED)
        p1, p2 = share_ci(d1, n1), share_ci(d2, n2)
        if n1 and n2:
            verdict = (
                "fewer"
                if p1[2] < p2[1]
                else "more"
                if p1[1] > p2[2]
                else "no significantly different share of"
            )
            out.append(
                f"Stability: the certified-Lipschitz conditions diverged in {d1} of "
                f"{n1} PCD runs ({fmt_share(d1, n1)}), the unconstrained and "
                f"soft-constrained ones in {d2} of {n2} ({fmt_share(d2, n2)}): "
                f"{verdict} divergences with the hard constraint (95 % Wilson "
                "intervals; disjoint intervals are called a difference)."
            )
        per = []
        for c in CONDS:
            d, n = discussion.diverged(st, (c,))
            if n:
                per.append(f"{c} {d}/{n}")
        out.append("Diverged runs per condition: " + ", ".join(per) + ".")
    gen = kinds.get("gen2d", [])
    if gen:
        means = {}
        for c in CONDS:
            m = mean_ci(
                [r["result"]["test_nll"] for r in gen if r["cell"]["condition"] == c]
            )[0]
            if m is not None:
                means[c] = m
        if means:
            order = sorted(means, key=means.get)
            out.append(
                "Held-out NLL per condition (mean over seeds and n, best first): "
                + ", ".join(f"{c} {means[c]:.3g}" for c in order)
                + "."
            )
        lip = [
            r["result"]["gap_nll"]
            for r in gen
            if r["cell"]["condition"] in conditions.CERTIFIED
        ]
        unc = [
            r["result"]["gap_nll"]
            for r in gen
            if r["cell"]["condition"] in UNCONSTRAINED
        ]
        out.append(
            "Generalisation (2D, all n pooled): held-out minus train NLL "
            f"{fmt_mean(lip)} nats for the certified conditions, {fmt_mean(unc)} for "
            "the others."
        )
        lk = [
            r["result"]["test_nll"]
            for r in gen
            if r["cell"]["condition"] in conditions.CERTIFIED
        ]
        uk = [
            r["result"]["test_nll"]
            for r in gen
            if r["cell"]["condition"] in UNCONSTRAINED
        ]
        out.append(
            f"Quality: held-out NLL {fmt_mean(lk)} (certified) against {fmt_mean(uk)} "
            "(others), at the same number of steps."
        )
    it = kinds.get("interp2d", [])
    if it:
        lip = [
            r["result"]["spearman_e_dist"]
            for r in it
            if r["cell"]["condition"] in conditions.CERTIFIED
        ]
        unc = [
            r["result"]["spearman_e_dist"]
            for r in it
            if r["cell"]["condition"] in UNCONSTRAINED
        ]
        out.append(
            f"Interpretability: Spearman(E, distance to data) {fmt_mean(lip)} for the "
            f"certified conditions, {fmt_mean(unc)} for the others."
        )
    ex = kinds.get("explain", [])
    if ex:
        parts = []
        for group, name in (
            (conditions.CERTIFIED, "certified"),
            (UNCONSTRAINED, "others"),
        ):
            rs = [r["result"] for r in ex if r["cell"]["condition"] in group]
            if rs:
                parts.append(
                    f"{fmt_mean([x['cf_success'] for x in rs])} ({name}, deletion "
                    f"ratio {fmt_mean([discussion.deletion_ratio(x) for x in rs])})"
                )
        out.append(
            "Counterfactuals on digits: share of energy-descent paths from another "
            "digit that end nearest to a training image of the modelled digit "
            + " against ".join(parts)
            + "."
        )
    dg = kinds.get("digits", [])
    if dg:
        held = sum(r["result"]["bound_holds"] for r in dg)
        out.append(
            f"Robustness: the certified AUROC was below the PGD-attacked AUROC at "
            f"every ε in {held} of {len(dg)} digits runs."
        )
        for group, name in (
            (conditions.CERTIFIED, "certified"),
            (UNCONSTRAINED, "others"),
        ):
            rs = [r["result"] for r in dg if r["cell"]["condition"] in group]
            if rs:
                last = len(rs[0]["attacks"]) - 1
                eps = rs[0]["attacks"][last]["eps"]
                cert = fmt_mean([x["attacks"][last]["certified"] for x in rs])
                clean = fmt_mean([x["auroc_clean"] for x in rs])
                out.append(
                    f"At ε={eps:g} ({name}): PGD AUROC "
                    f"{fmt_mean([x['attacks'][last]['empirical'] for x in rs])}, "
                    f"certified {cert}, clean {clean}."
                )
    return out or ["No cell is finished yet: nothing to report."]


# ------------------------------------------------------------------ render
def _coverage(budget, records, settings):
    full_settings, full_grid = grid.BUDGETS["full"]
    done = {grid.cell_id(r["cell"], settings) for r in records}
    if settings["tag"] == full_settings["tag"]:
        full_ids = {grid.cell_id(c, full_settings) for c in grid.cells(full_grid)}
        n_full_done = len(done & full_ids)
    else:
        full_ids, n_full_done = (
            {grid.cell_id(c, full_settings) for c in grid.cells(full_grid)},
            0,
        )
    per_kind = defaultdict(lambda: [0, 0])
    for c in grid.cells(full_grid):
        per_kind[c["kind"]][1] += 1
        if grid.cell_id(c, full_settings) in done:
            per_kind[c["kind"]][0] += 1
    budget_cells = grid.cells(grid.BUDGETS[budget][1])
    n_budget_done = sum(grid.cell_id(c, settings) in done for c in budget_cells)
    return {
        "full_total": len(full_ids),
        "full_done": n_full_done,
        "budget_total": len(budget_cells),
        "budget_done": n_budget_done,
        "per_kind": dict(per_kind),
    }


def render(budget, cells_dir, report_dir):
    """Write docs/report.md, docs/img/report/*.png and report/report.tex."""
    settings, _ = grid.BUDGETS[budget]
    records = load_cells(cells_dir, settings)
    kinds = _by_kind(records)
    report_dir = Path(report_dir)
    img_dir = report_dir / "docs" / "img" / "report"
    img_dir.mkdir(parents=True, exist_ok=True)
    tex_dir = report_dir / "report"
    tex_dir.mkdir(parents=True, exist_ok=True)
    figs = {}
    for name, (kind, fn) in FIGURES.items():
        if kinds.get(kind):
            p = img_dir / f"{name}.png"
            fn(kinds[kind], p)
            figs[name] = p.name
    cov = _coverage(budget, records, settings)
    tables = {}
    if kinds.get("stab2d"):
        t1, t2 = stability_tables(kinds["stab2d"])
        tables.update(
            table_stab_eta=t1, table_stab=t2, table_drift=drift_table(kinds["stab2d"])
        )
    if kinds.get("gen2d"):
        tables["table_gen"] = gen_table(kinds["gen2d"])
    if kinds.get("digits"):
        tables["table_digits_gen"] = digits_gen_table(kinds["digits"])
        tables["table_robust"] = robust_table(kinds["digits"])
    if kinds.get("interp2d"):
        tables["table_interp"] = interp_table(kinds["interp2d"])
    if kinds.get("explain"):
        tables["table_explain"] = explain_table(kinds["explain"])
    names = (
        "table_stab_eta",
        "table_stab",
        "table_drift",
        "table_gen",
        "table_digits_gen",
        "table_interp",
        "table_explain",
        "table_robust",
    )
    kind_rows = [
        [k, f"{cov['per_kind'].get(k, [0, 0])[0]}/{cov['per_kind'].get(k, [0, 0])[1]}"]
        for k in grid.KINDS
    ]
    cov_table = Table(
        ["cell kind", "full-grid cells done"],
        kind_rows,
        "Coverage of the full grid by the cached cells.",
    )
    conds_table = Table(
        ["condition", "energy"],
        [[c, conditions.DESCRIPTIONS[c]] for c in CONDS],
        "The conditions.",
    )
    s = settings
    values = {
        "budget": budget,
        "commit": _commit(),
        "budget_done": str(cov["budget_done"]),
        "budget_total": str(cov["budget_total"]),
        "full_done": str(cov["full_done"]),
        "full_total": str(cov["full_total"]),
        "n_records": str(len(records)),
        "settings_tag": s["tag"],
        "settings_hash": grid.settings_hash(s),
        "stab_units": "×".join(map(str, s["stab_units"])),
        "stab_steps": str(s["stab_steps"]),
        "stab_chain": str(s["stab_chain"]),
        "stab_batch": str(s["stab_batch"]),
        "stab_n": str(s["stab_n"]),
        "units_2d": "×".join(map(str, s["units_2d"])),
        "gen_steps": str(s["gen_steps"]),
        "interp_steps": str(s["interp_steps"]),
        "interp_n": str(s["interp_n"]),
        "digits_units": "×".join(map(str, s["digits_units"])),
        "digits_steps": str(s["digits_steps"]),
        "digits_chain": str(s["digits_chain"]),
        "digits_drift": f"{s['digits_drift']:g}",
        "blowup": f"{_q().BLOWUP:g}",
        "flip": f"{_q().FLIP:g}",
        "flip_checks": str(_q().FLIP_CHECKS),
        "warmup": f"{_q().WARMUP:g}",
        "outside": f"{_q().OUTSIDE:g}",
        "gp_weight": f"{conditions.GP_WEIGHT:g}",
        "gp_target": f"{conditions.GP_TARGET:g}",
        "sn_k": f"{conditions.SN_K:g}",
    }
    out = []
    for fmt, tmpl, target in (
        ("md", "report.md.tmpl", report_dir / "docs" / "report.md"),
        ("tex", "report.tex.tmpl", tex_dir / "report.tex"),
    ):
        v = (
            dict(values)
            if fmt == "md"
            else {key: tex_escape(val) for key, val in values.items()}
        )
        for n in names:
            v[n] = (
                getattr(tables[n], fmt)()
                if n in tables
                else (
                    "*(no cell finished yet)*"
                    if fmt == "md"
                    else "(no cell finished yet)"
                )
            )
        v["table_coverage"] = getattr(cov_table, fmt)()
        v["table_conditions"] = getattr(conds_table, fmt)()
        v["findings"] = _findings_block(findings(kinds), fmt)
        v["discussion"] = _discussion_block(discussion.paragraphs(kinds), fmt)
        v["coverage_note"] = _coverage_note(cov, fmt)
        for name in FIGURES:
            v[f"fig_{name}"] = _figure(figs.get(name), name, fmt)
        text = _Template((HERE / tmpl).read_text()).substitute(v)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        out.append(target)
    shutil.copy(HERE / "references.bib", tex_dir / "references.bib")
    return out


def _q():
    from benchmarks.study import questions

    return questions


def _discussion_block(paragraphs, fmt):
    if fmt == "md":
        return "\n\n".join(f"**{h}.** {t}" for h, t in paragraphs)
    return "\n\n".join(
        f"\\paragraph{{{tex_escape(h)}.}} {tex_escape(t)}" for h, t in paragraphs
    )


def _coverage_note(cov, fmt):
    if cov["full_done"] == cov["full_total"]:
        text = (
            f"The full grid is done ({cov['full_total']} cells); every interval is "
            "still as wide as its n makes it (5 to 10 seeds per condition outside "
            "the stability map)."
        )
    else:
        text = (
            f"The grid is incomplete ({cov['full_done']} of {cov['full_total']} "
            "cells of the full grid): seeds are fewer than the full budget's, and "
            "every interval is as wide as its n makes it."
        )
    return text if fmt == "md" else tex_escape(text)


def _findings_block(items, fmt):
    if fmt == "md":
        return "\n".join(f"- {x}" for x in items)
    body = "\n".join(f"\\item {tex_escape(x)}" for x in items)
    return "\\begin{itemize}\n" + body + "\n\\end{itemize}"


CAPTIONS = {
    "stability": "Share of PCD runs that diverged against the Langevin step size.",
    "generalisation": "Exact held-out NLL and generalisation gap against n.",
    "landscapes": "Learned densities, energies and descent fields (seed 0).",
    "robustness": "Certified (dotted) and PGD-attacked (solid) AUROC against ε.",
    "digits_samples": "Samples of the one-class digit models.",
    "explain": "Saliency maps and energy-descent counterfactuals on digits.",
}


def _figure(file, name, fmt):
    if file is None:
        return "*(figure pending: no cell finished)*" if fmt == "md" else ""
    if fmt == "md":
        return f"![{CAPTIONS[name]}](img/report/{file})\n\n*{CAPTIONS[name]}*"
    return (
        "\\begin{figure}[ht]\\centering\n"
        f"\\includegraphics[width=\\linewidth]{{{file}}}\n"
        f"\\caption{{{tex_escape(CAPTIONS[name])}}}\n\\end{{figure}}"
    )
