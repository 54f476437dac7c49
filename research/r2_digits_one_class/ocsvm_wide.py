import sys, numpy as np
from common import get_split, scores_report, summarise, save
from sklearn.svm import OneClassSVM
F = lambda a: a.reshape(len(a), -1).astype(np.float64)
out = {}
for split in ("val", "test"):
    xtr, ytr, xte, yte = get_split(split)
    for gamma in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5):
        for nu in (0.05, 0.1, 0.3):
            per = [scores_report(-OneClassSVM(gamma=gamma, nu=nu).fit(F(xtr[ytr == c])).decision_function(F(xte)), yte, c) for c in range(10)]
            out[f"{split}_g{gamma}_nu{nu}"] = summarise(per)["auroc"]
            print(split, gamma, nu, f"{out[f'{split}_g{gamma}_nu{nu}']:.4f}", " ".join(f"{p['auroc']:.3f}" for p in per), flush=True)
save("results/ocsvm_wide.json", out)
