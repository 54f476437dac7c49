"""The report's discussion: paragraphs whose numbers *and verdicts* are computed.

Each paragraph reads the cached cells, compares groups by their 95 % intervals
(disjoint intervals are called a difference, overlapping ones are not) and words
its conclusion accordingly, so a re-run with other results cannot keep a stale
claim. Plain text with a few Unicode symbols (the LaTeX report escapes it).
"""

from __future__ import annotations

import math

from benchmarks.study import conditions
from benchmarks.study.stats import fmt_mean, fmt_share, mean_ci, share_ci

UNCONSTRAINED = conditions.UNCONSTRAINED
FIXED = tuple(f"lip-k{k:g}" for k in conditions.FIXED_K)
#: drift bounds ηk up to this are "small" in the stability paragraph
SMALL_DRIFT = 0.05


def _of(recs, conds):
    return [r["result"] for r in recs if r["cell"]["condition"] in conds]


def diverged(recs, conds):
    """``(diverged runs, runs)`` of stability cells of the conditions ``conds``."""
    rs = _of(recs, conds)
    return sum(bool(r["diverged"]) for r in rs), len(rs)


def deletion_ratio(result):
    """An explanation cell's energy rise for the saliency-ranked pixels over the
    rise for random ones (None when the random rise is not positive)."""
    rnd = result["deletion_rise_random"]
    return result["deletion_rise_saliency"] / rnd if rnd > 0 else None


def _per_condition(recs, conds, text):
    """``"c <text(results of c)>"`` joined over the conditions that have cells."""
    return ", ".join(f"{c} {text(_of(recs, (c,)))}" for c in conds if _of(recs, (c,)))


def _compare_shares(a, b):
    """'lower', 'higher' or 'not different' for share a against share b."""
    _, lo_a, hi_a = share_ci(*a)
    _, lo_b, hi_b = share_ci(*b)
    if hi_a < lo_b:
        return "lower"
    if lo_a > hi_b:
        return "higher"
    return "not different"


def _compare_means(a, b):
    """'lower', 'higher' or 'not different' for the mean of a against b."""
    ma, ha, _ = mean_ci(a)
    mb, hb, _ = mean_ci(b)
    if ma is None or mb is None:
        return "not different"
    ha, hb = ha or 0.0, hb or 0.0
    if ma + ha < mb - hb:
        return "lower"
    if ma - ha > mb + hb:
        return "higher"
    return "not different"


def _monotone(values):
    """'rises', 'falls' or 'is not monotone' for a sequence."""
    pairs = list(zip(values, values[1:]))
    if pairs and all(b > a for a, b in pairs):
        return "rises"
    if pairs and all(b < a for a, b in pairs):
        return "falls"
    return "is not monotone"


def stability(st):
    cert = diverged(st, conditions.CERTIFIED)
    twin = diverged(st, ("twin",))
    others = diverged(st, UNCONSTRAINED)
    shares = [diverged(st, (c,)) for c in FIXED]
    trend = _monotone([d / n for d, n in shares if n])
    verdict = _compare_shares(cert, others)
    hyp = {
        "lower": "is supported here: the certified conditions diverged less often",
        "higher": "is not supported here: the certified conditions diverged more often",
        "not different": "is not supported here: the certified conditions did not "
        "diverge less often",
    }[verdict]
    text = (
        f"The hypothesis that the hard constraint stabilises PCD {hyp} "
        f"({fmt_share(*cert)} against {fmt_share(*others)} for the unconstrained and "
        "soft-constrained nets). The divergence share "
        f"{trend} with k ("
        + ", ".join(f"{c} {d}/{n}" for c, (d, n) in zip(FIXED, shares))
        + f"), and the same-shape unconstrained twin diverged in {fmt_share(*twin)}."
    )
    reasons = {}
    steps = []
    for r in _of(st, conditions.CERTIFIED):
        if r["diverged"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
            steps.append(r["divergence_step"])
    if reasons:
        top = max(reasons, key=reasons.get)
        text += (
            f" Most certified divergences are '{top}' ({reasons[top]} of "
            f"{sum(reasons.values())}), at step {fmt_mean(steps)}: the energy cannot "
            "blow up (its slope is capped), but the chains end in places the model "
            "scores lower than the data, i.e. the contrastive gradient flips sign. "
            "The drift bound ηk limits how far one Langevin step goes, not whether "
            "short persistent chains keep up with a landscape that changes at every "
            "update (a larger k likely makes it change faster for the same learning "
            "rate)."
        )
    small = [
        r for r in _of(st, conditions.CERTIFIED) if r["drift_bound"] <= SMALL_DRIFT
    ]
    large = [r for r in _of(st, conditions.CERTIFIED) if r["drift_bound"] > SMALL_DRIFT]
    if small and large:
        ds = (sum(bool(r["diverged"]) for r in small), len(small))
        dl = (sum(bool(r["diverged"]) for r in large), len(large))
        word, than = {
            "lower": ("less often", "than"),
            "higher": ("more often", "than"),
            "not different": ("about as often", "as"),
        }[_compare_shares(ds, dl)]
        text += (
            f" With a drift bound ηk ≤ {SMALL_DRIFT:g} the certified runs diverged "
            f"{word} ({fmt_share(*ds)}) {than} above it ({fmt_share(*dl)})"
        )
        text += (
            ": choosing η from k (η ∝ 1/k, as the library's chain default does) is "
            "a use of the bound."
            if word == "less often"
            else "."
        )
    learned = [r["k"] for r in _of(st, ("lip-learnk",)) if r.get("k") is not None]
    if learned:
        text += (
            f" The learned k stayed within [{min(learned):.3g}, {max(learned):.3g}] "
            f"of its start {conditions.LEARN_K_START:g} in these "
            "short runs, so lip-learnk behaves like lip-k20."
        )
    return text


def generalisation(gen):
    ns = sorted({r["cell"]["n"] for r in gen})
    if not ns:
        return ""
    lo_n, hi_n = ns[0], ns[-1]

    def at(c, n, key):
        return [
            r["result"][key]
            for r in gen
            if r["cell"]["condition"] == c and r["cell"]["n"] == n
        ]

    gaps = [mean_ci(at(c, lo_n, "gap_nll"))[0] for c in FIXED]
    nlls = [mean_ci(at(c, lo_n, "test_nll"))[0] for c in FIXED]
    text = (
        f"With n = {lo_n} training points the train/held-out gap "
        f"{_monotone(gaps)} with k ("
        + ", ".join(f"{c} {g:.3g}" for c, g in zip(FIXED, gaps))
        + f" nats; twin {mean_ci(at('twin', lo_n, 'gap_nll'))[0]:.3g}) while the "
        f"held-out NLL {_monotone(nlls)} with k ("
        + ", ".join(f"{v:.3g}" for v in nlls)
        + "): a small k regularises (the energy cannot follow the few points), at "
        "the price of fit."
    )
    best_cert = min(
        conditions.CERTIFIED, key=lambda c: mean_ci(at(c, hi_n, "kl"))[0] or math.inf
    )
    kc, kt = at(best_cert, hi_n, "kl"), at("twin", hi_n, "kl")
    word = _compare_means(kc, kt)
    text += (
        f" With n = {hi_n} the best certified condition ({best_cert}) reaches KL "
        f"{fmt_mean(kc)}, the unconstrained twin {fmt_mean(kt)}: "
        + {
            "higher": "the constraint costs quality at the same number of steps "
            "on this density.",
            "lower": "the constraint improves quality at the same number of steps "
            "on this density.",
            "not different": "no significant difference of quality.",
        }[word]
    )
    return text


def interpretability(it, ex):
    parts = []
    if it:
        sp = {
            c: [r["spearman_e_dist"] for r in _of(it, (c,))]
            for c in conditions.CONDITIONS
        }
        cert = [v for c in conditions.CERTIFIED for v in sp[c]]
        low = [c for c in UNCONSTRAINED if _compare_means(sp[c], cert) == "lower"]
        same = [c for c in UNCONSTRAINED if c not in low and sp[c]]
        text = (
            f"Every certified energy reads like a distance to the data "
            f"(Spearman(E, distance) {fmt_mean(cert)})"
        )
        if same:
            text += (
                "; so do "
                + ", ".join(f"{c} ({fmt_mean(sp[c])})" for c in same)
                + ": the GroupSort architecture gives much of this shape without "
                "the constraint"
            )
        if low:
            text += "; lower for " + ", ".join(f"{c} ({fmt_mean(sp[c])})" for c in low)
        text += "."
        rk = []
        for c in FIXED:
            rs = _of(it, (c,))
            if rs:
                rk.append(mean_ci([r["radius_median"] * r["k"] for r in rs])[0])
        if rk and max(rk) < 2 * min(rk):
            text += (
                " The median certified radius shrinks like 1/k: radius × k stays "
                f"within [{min(rk):.2g}, {max(rk):.2g}] from k = 5 to 40 — the "
                "certificate is set by the energy's slope budget, which a larger k "
                "spends on sharper densities."
            )
        parts.append(text)
    if ex:
        cs = _of(ex, conditions.CERTIFIED)
        success = fmt_mean([r["cf_success"] for r in cs])
        text = (
            "On digits, energy descent from another digit ends nearest to a "
            f"training image of the modelled digit in {success} "
            "of the paths for the certified energies; "
            + _per_condition(
                ex, UNCONSTRAINED, lambda rs: fmt_mean([r["cf_success"] for r in rs])
            )
            + ". Along these paths the certified energies reach "
            f"{fmt_mean([_used(r) for r in cs])} of their certified slope; the "
            "others' certified constant (a product of layer norms) is "
            + _per_condition(
                ex,
                UNCONSTRAINED,
                lambda rs: f"×{1 / mean_ci([_used(r) for r in rs])[0]:.2g}",
            )
            + " the largest slope met on their paths."
        )
        ratios = {
            c: mean_ci([deletion_ratio(r) for r in _of(ex, (c,))])[0]
            for c in conditions.CONDITIONS
            if _of(ex, (c,))
        }
        below = [c for c, v in ratios.items() if v is None or v <= 1]
        if not below:
            text += (
                " Saliency passes the deletion test for every condition (mean ratio "
                f"{min(ratios.values()):.2g} to {max(ratios.values()):.2g}, above 1), "
                "so it is not what separates them."
            )
        else:
            text += (
                " Saliency fails the deletion test (mean ratio ≤ 1) for "
                + ", ".join(below)
                + "."
            )
        parts.append(text)
    return " ".join(parts)


def _used(r):
    """Share of the certified slope met on a counterfactual path."""
    return r["cf_grad_norm_max"] / r["k_certified"]


def robustness(dg):
    if not dg:
        return ""
    held = sum(bool(r["result"]["bound_holds"]) for r in dg)
    cs = _of(dg, conditions.CERTIFIED)
    last = len(cs[0]["attacks"]) - 1
    eps = cs[0]["attacks"][last]["eps"]
    gap_c = [
        r["attacks"][last]["empirical"] - r["attacks"][last]["certified"] for r in cs
    ]
    us = _of(dg, UNCONSTRAINED)
    gap_u = [
        r["attacks"][last]["empirical"] - r["attacks"][last]["certified"] for r in us
    ]
    cert_c = [r["attacks"][last]["certified"] for r in cs]
    text = (
        f"The certificate never contradicted the attack ({held} of {len(dg)} runs). "
        f"At ε = {eps:g} the deel-lip certificate is tight: the attacked AUROC exceeds "
        f"the certified one by only {fmt_mean(gap_c)}, against {fmt_mean(gap_u)} for "
        "the others, whose layer-norm bound is far from their true slope. "
    )
    groups = {"lower": [], "higher": [], "not different": []}
    for c in UNCONSTRAINED:
        emp = [r["attacks"][last]["empirical"] for r in _of(dg, (c,))]
        if emp:
            groups[_compare_means(emp, cert_c)].append(f"{c} {fmt_mean(emp)}")
    text += (
        f"Against the deel-lip energies' certified AUROC at ε = {eps:g} "
        f"({fmt_mean(cert_c)}), the PGD-attacked AUROC of the others is "
    )
    said = []
    for key, words in (
        ("lower", "lower for"),
        ("not different", "not different for"),
        ("higher", "higher for"),
    ):
        if groups[key]:
            said.append(f"{words} " + ", ".join(groups[key]))
    text += "; ".join(said) + (
        ". The attack is a 20-step PGD: it bounds the unconstrained models' "
        "robustness from above only, while the certificate bounds the deel-lip "
        "energies' from below."
    )
    return text


def paragraphs(kinds):
    """The discussion's paragraphs for the finished cells (kind -> records)."""
    out = []
    if kinds.get("stab2d"):
        out.append(("Stability", stability(kinds["stab2d"])))
    if kinds.get("gen2d"):
        out.append(("Generalisation", generalisation(kinds["gen2d"])))
    if kinds.get("interp2d") or kinds.get("explain"):
        out.append(
            (
                "Interpretability",
                interpretability(kinds.get("interp2d", []), kinds.get("explain", [])),
            )
        )
    if kinds.get("digits"):
        out.append(("Robustness", robustness(kinds["digits"])))
    return [(h, t) for h, t in out if t]
