import json, sys
rows = []
for name in sys.argv[1:]:
    r = json.load(open(f"results/{name}.json"))
    pc = r["per_class"]; m = r["mean"]
    print(f"| {name} | " + " ".join(f"{p['auroc']:.3f}" for p in pc) + f" | **{m['auroc']:.4f}** | {m['cert_0.1']:.3f} / {m['cert_0.25']:.3f} / {m['cert_0.5']:.3f} | {m['steps']:.0f} / {m['seconds']:.0f} (max {max(p['seconds'] for p in pc):.0f}) | {max(p['grad_max_test'] for p in pc):.3f} |")
