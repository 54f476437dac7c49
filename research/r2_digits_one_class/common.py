"""Shared protocol for digits one-vs-rest (issue 10).

split='test': deel_ebm.datasets.load_digits(test_size=0.3) (== sklearn
train_test_split(test_size=0.3, stratify=y, random_state=0)); train on one class's
training images, score the whole test split.
split='val': exploration split inside the training images only (stratified 70/30 of
x_train, random_state=1), so that hyper-parameters are not chosen on the test set.
"""
import json, os, time
import numpy as np
import deel_ebm  # noqa: F401  (before tensorflow)
from deel_ebm.datasets import load_digits
from deel_ebm.certificates import certified_auroc

RADII = (0.1, 0.25, 0.5)


def get_split(split="test"):
    d = load_digits(test_size=0.3)
    if split == "test":
        return d.x_train, d.y_train, d.x_test, d.y_test
    from sklearn.model_selection import train_test_split
    xtr, xva, ytr, yva = train_test_split(d.x_train, d.y_train, test_size=0.3,
                                          stratify=d.y_train, random_state=1)
    return xtr, ytr, xva, yva


def scores_report(energy, y_test, cls, k=None):
    """energy: (n,) energies of the test split (low = class). k: Lipschitz const or None."""
    e_in, e_out = energy[y_test == cls], energy[y_test != cls]
    r = {"auroc": certified_auroc(e_in, e_out, 1.0, 0.0)}
    if k is not None:
        for eps in RADII:
            r[f"cert_{eps}"] = certified_auroc(e_in, e_out, k, eps)
    return r


def summarise(per_class):
    keys = per_class[0].keys()
    out = {}
    for key in keys:
        vals = [p[key] for p in per_class if isinstance(p.get(key), (int, float))]
        if len(vals) == len(per_class):
            out[key] = float(np.mean(vals))
    return out


def save(path, obj):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1, default=float)
