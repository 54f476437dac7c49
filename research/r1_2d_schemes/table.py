"""Markdown table of results.jsonl: one row per (tag, density, seed, checkpoint)."""
import json
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "/work/research/r1/results.jsonl"
rows = [json.loads(l) for l in open(path)]
print("| tag | density | seed | steps | train s | s/step | KL | rev KL | test NLL (data) | max‖∇E‖ / cap | c | modes min–max |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    modes = ""
    if r.get("mode_masses"):
        modes = f"{min(r['mode_masses']):.3f}–{max(r['mode_masses']):.3f}"
    print(
        f"| {r['tag']} | {r['density']} | {r['seed']} | {r['at_steps']} | {r['train_seconds']:.0f} | {r['sec_per_step']:.3f} "
        f"| {r['kl']:.3f} | {r['reverse_kl']:.2f} | {r['test_nll']:.3f} ({r['data_test_nll']:.3f}) "
        f"| {r['grad_max']:.1f} / {r['cap']:g} | {r['c']:.1f} | {modes} |"
    )
