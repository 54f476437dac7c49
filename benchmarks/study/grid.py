"""Budgets and the grid of cells.

A budget has *training settings* (network widths, steps, chain lengths: what a
cell's result depends on) and *grid sizes* (which seeds, step sizes, learning
rates, training-set sizes). ``medium`` uses the full budget's training settings
on a sub-grid, so every medium cell is a cell of the full grid and a later
``--budget full`` run only computes the rest. ``smoke`` has its own tiny settings
(tagged ``smoke`` in the cell ids, never mixed with the full grid's cells).
"""

from __future__ import annotations

import hashlib
import itertools
import json

from benchmarks.study.conditions import CONDITIONS

QUESTIONS = {
    "stability": ("stab2d",),
    "generalisation": ("gen2d", "digits"),
    "interpretability": ("interp2d", "explain"),
    "robustness": ("digits",),
}
KINDS = ("stab2d", "gen2d", "interp2d", "digits", "explain")
ETAS = (1e-3, 5e-3, 2e-2, 5e-2)
LRS = (1e-4, 1e-3, 3e-3)
SIZES = (200, 1000, 5000, 20000)
EPSILONS = (0.1, 0.25, 0.5)

FULL_SETTINGS = {
    "tag": "full",
    # stability: small nets, short PCD runs
    "stab_units": (32, 32),
    "stab_n": 2000,
    "stab_batch": 128,
    "stab_chain": 20,
    "stab_steps": 300,
    "stab_every": 10,
    # 2D default scheme (generalisation, interpretability)
    "units_2d": (64, 64, 64),
    "lr_2d": 1e-3,
    "batch_2d": 1024,
    "gen_steps": 400,
    "interp_n": 5000,
    "interp_steps": 400,
    "interp_res": 48,
    "interp_arrows": 16,
    # digits one-vs-rest (chains: 64 dimensions)
    "digits_units": (128, 128),
    "digits_lr": 1e-3,
    "digits_batch": 64,
    "digits_chain": 30,
    "digits_drift": 0.02,
    "digits_steps": 300,
    "digits_samples": 200,
    "digits_n_out": 300,
    "digits_eps": EPSILONS,
}
SMOKE_SETTINGS = dict(
    FULL_SETTINGS,
    tag="smoke",
    stab_units=(8, 8),
    stab_n=256,
    stab_batch=64,
    stab_chain=5,
    stab_steps=12,
    stab_every=4,
    units_2d=(16, 16),
    batch_2d=256,
    gen_steps=8,
    interp_n=500,
    interp_steps=8,
    interp_res=24,
    interp_arrows=8,
    digits_units=(16, 16),
    digits_batch=32,
    digits_chain=5,
    digits_steps=6,
    digits_samples=20,
    digits_n_out=60,
)

FULL_GRID = {
    "stab_seeds": tuple(range(10)),
    "stab_etas": ETAS,
    "stab_lrs": LRS,
    "gen_seeds": tuple(range(5)),
    "gen_sizes": SIZES,
    "interp_seeds": tuple(range(5)),
    "digits_seeds": tuple(range(5)),
    "digits_classes": (0, 3),
    "explain_seeds": (0, 1, 2),
}
MEDIUM_GRID = {
    "stab_seeds": (0, 1, 2),
    "stab_etas": ETAS,
    "stab_lrs": (1e-3,),
    "gen_seeds": (0, 1),
    "gen_sizes": (200, 5000),
    "interp_seeds": (0, 1),
    "digits_seeds": (0, 1),
    "digits_classes": (0,),
    "explain_seeds": (0,),
}
SMOKE_GRID = {
    "stab_seeds": (0,),
    "stab_etas": (2e-2,),
    "stab_lrs": (1e-3,),
    "gen_seeds": (0,),
    "gen_sizes": (200,),
    "interp_seeds": (0,),
    "digits_seeds": (0,),
    "digits_classes": (0,),
    "explain_seeds": (0,),
}
BUDGETS = {
    "smoke": (SMOKE_SETTINGS, SMOKE_GRID),
    "medium": (FULL_SETTINGS, MEDIUM_GRID),
    "full": (FULL_SETTINGS, FULL_GRID),
}


def settings_hash(settings) -> str:
    """A short hash of the training settings: part of every cell id."""
    text = json.dumps(settings, sort_keys=True, default=list)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def cell_id(cell, settings) -> str:
    parts = [settings["tag"], settings_hash(settings), cell["kind"], cell["condition"]]
    parts += [f"{k}{cell[k]:g}" for k in sorted(cell) if k not in ("kind", "condition")]
    return "_".join(parts)


def cells(grid, questions=None) -> list[dict]:
    """The cells of a grid, for the given questions (default: all), ordered so
    that each kind's seeds come in rounds (a partial run covers every condition)."""
    kinds = KINDS if questions is None else _kinds(questions)
    out = []
    if "stab2d" in kinds:
        for s, lr, eta, c in itertools.product(
            grid["stab_seeds"], grid["stab_lrs"], grid["stab_etas"], CONDITIONS
        ):
            out.append(
                {"kind": "stab2d", "condition": c, "seed": s, "eta": eta, "lr": lr}
            )
    if "gen2d" in kinds:
        for s, n, c in itertools.product(
            grid["gen_seeds"], grid["gen_sizes"], CONDITIONS
        ):
            out.append({"kind": "gen2d", "condition": c, "seed": s, "n": n})
    if "interp2d" in kinds:
        for s, c in itertools.product(grid["interp_seeds"], CONDITIONS):
            out.append({"kind": "interp2d", "condition": c, "seed": s})
    if "digits" in kinds:
        for s, d, c in itertools.product(
            grid["digits_seeds"], grid["digits_classes"], CONDITIONS
        ):
            out.append({"kind": "digits", "condition": c, "seed": s, "digit": d})
    if "explain" in kinds:
        for s, d, c in itertools.product(
            grid["explain_seeds"], grid["digits_classes"], CONDITIONS
        ):
            out.append({"kind": "explain", "condition": c, "seed": s, "digit": d})
    out.sort(key=lambda cell: cell["seed"])  # stable: rounds of seeds over kinds
    return out


def _kinds(questions):
    kinds = set()
    for q in questions:
        if q not in QUESTIONS:
            raise ValueError(f"unknown question {q!r}; one of {sorted(QUESTIONS)}")
        kinds.update(QUESTIONS[q])
    return kinds
