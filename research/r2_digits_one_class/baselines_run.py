"""Baselines on the same protocol: OneClassSVM (default + gamma/nu grid), IsolationForest,
GaussianMixture, KernelDensity, and 1-Lipschitz references (distance to the class's
training set: 1-NN and soft-min), which carry certified AUROC with k = 1."""
import sys, time
import numpy as np
from common import get_split, scores_report, summarise, save, RADII
from deel_ebm import baselines as B
from sklearn.svm import OneClassSVM

split = sys.argv[1] if len(sys.argv) > 1 else "test"
xtr, ytr, xte, yte = get_split(split)
F = lambda a: a.reshape(len(a), -1).astype(np.float64)
res = {}

def run(name, fn, k=None):
    per, t0 = [], time.time()
    for c in range(10):
        e = fn(F(xtr[ytr == c]), F(xte))
        per.append(scores_report(np.asarray(e, float), yte, c, k))
    res[name] = {"per_class": per, "mean": summarise(per), "seconds_total": time.time() - t0}
    m = res[name]["mean"]
    print(f"{name:40s} " + " ".join(f"{k_}={v:.4f}" for k_, v in m.items()),
          "| per-class", " ".join(f"{p['auroc']:.3f}" for p in per), flush=True)

run("OCSVM_default(lib)", lambda a, b: B.OneClassSVMBaseline().fit(a).score(b))
grid = {}
for gamma in ("scale", 0.005, 0.01, 0.02, 0.03, 0.05, 0.1):
    for nu in (0.01, 0.05, 0.1, 0.2, 0.5):
        run(f"OCSVM_g{gamma}_nu{nu}",
            lambda a, b: -OneClassSVM(gamma=gamma, nu=nu).fit(a).decision_function(b))
        grid[(gamma, nu)] = res[f"OCSVM_g{gamma}_nu{nu}"]["mean"]["auroc"]
best = max(grid, key=grid.get)
print("OCSVM best on this split:", best, grid[best])
res["OCSVM_best"] = {"params": list(map(str, best)), **res[f"OCSVM_g{best[0]}_nu{best[1]}"]}
run("IsolationForest(lib)", lambda a, b: B.IsolationForestBaseline().fit(a).score(b))
run("GaussianMixture(lib,BIC)", lambda a, b: B.GaussianMixtureBaseline().fit(a).energy(b))
run("KernelDensity(lib,CV)", lambda a, b: B.KernelDensityBaseline().fit(a).energy(b))

def nn_dist(a, b):
    d = np.sqrt(((b[:, None, :] - a[None]) ** 2).sum(-1))
    return d.min(1)
def softmin(T):
    def f(a, b):
        d = np.sqrt(((b[:, None, :] - a[None]) ** 2).sum(-1))
        m = d.min(1, keepdims=True)
        return (m - T * np.log(np.exp(-(d - m) / T).mean(1, keepdims=True)))[:, 0]
    return f
run("1NN_distance(1-Lipschitz)", nn_dist, k=1.0)
for T in (0.5, 1.0, 2.0):
    run(f"softmin_distance_T{T}(1-Lipschitz)", softmin(T), k=1.0)
save(f"results/baselines_{split}.json", res)
