r"""A small reference classifier of 8x8 digits, for image sample metrics.

:func:`digits_classifier` is trained once (seeded, 2 s on a CPU) on the bundled
sklearn digits and cached; :func:`classifier_features`, :func:`class_histogram` and
:func:`mean_confidence` grade generated digits with it (the Fréchet distance of
:mod:`~deel_ebm.metrics.samples` uses its features).
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np
from scipy import special

from deel_ebm import datasets
from deel_ebm._checks import check_domain, check_samples

__all__ = [
    "DigitsClassifier",
    "digits_classifier",
    "classifier_features",
    "class_histogram",
    "mean_confidence",
]

CLASSIFIER_HIDDEN = 64
CLASSIFIER_SEED = 0
CLASSIFIER_VERSION = 2  # bump when the training recipe changes (names cache files)


class DigitsClassifier(NamedTuple):
    """A one-hidden-layer ReLU classifier of 8x8 digits in [-1, 1] (weights only).

    Features are the hidden activations :math:`h = \\max(0, x W_1 + b_1)`, class
    probabilities :math:`\\mathrm{softmax}(h W_2 + b_2)`, ``x`` the 64 pixels.
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    test_accuracy: float

    def features(self, x) -> np.ndarray:
        return np.maximum(x @ self.w1 + self.b1, 0.0)

    def predict_proba(self, x) -> np.ndarray:
        return special.softmax(self.features(x) @ self.w2 + self.b2, axis=1)


_CLASSIFIERS: dict[tuple, DigitsClassifier] = {}


def _train_classifier() -> DigitsClassifier:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    data = datasets.load_digits()
    clf = MLPClassifier(
        hidden_layer_sizes=(CLASSIFIER_HIDDEN,),
        alpha=1e-3,
        max_iter=400,
        random_state=CLASSIFIER_SEED,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(data.x_train.reshape(-1, 64), data.y_train)
    acc = clf.score(data.x_test.reshape(-1, 64), data.y_test)
    w1, w2 = clf.coefs_
    b1, b2 = clf.intercepts_
    return DigitsClassifier(w1, b1, w2, b2, float(acc))


def _load_classifier(path) -> DigitsClassifier:
    shapes = {
        "w1": (64, CLASSIFIER_HIDDEN),
        "b1": (CLASSIFIER_HIDDEN,),
        "w2": (CLASSIFIER_HIDDEN, 10),
        "b2": (10,),
        "test_accuracy": (),
    }
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: np.asarray(f[key], dtype=np.float64) for key in shapes}
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(
            f"Corrupt classifier cache {path!r} ({err}); delete it."
        ) from err
    for key, shape in shapes.items():
        if arrays[key].shape != shape or not np.all(np.isfinite(arrays[key])):
            raise ValueError(f"Corrupt classifier cache {path!r} (`{key}`); delete it.")
    arrays["test_accuracy"] = float(arrays["test_accuracy"])
    return DigitsClassifier(**arrays)


def digits_classifier(cache_dir=None) -> DigitsClassifier:
    """The reference digits classifier, trained once (seeded) and cached.

    A sklearn ``MLPClassifier`` (64 ReLU units, L2 1e-3, Adam, seed 0) fitted on
    the train split of :func:`deel_ebm.datasets.load_digits` (pixels in [-1, 1]);
    about 97 % test accuracy, 2 s on a CPU. Cached in memory, and under
    ``cache_dir`` (if given) as a plain ``.npz`` of its weights, read back with
    ``allow_pickle=False``. Never downloads anything.
    """
    key = (CLASSIFIER_VERSION, CLASSIFIER_HIDDEN, CLASSIFIER_SEED)
    if key in _CLASSIFIERS:
        return _CLASSIFIERS[key]
    path = None
    if cache_dir is not None:
        name = f"digits_classifier_v{key[0]}_h{key[1]}_s{key[2]}.npz"
        path = os.path.join(os.fspath(cache_dir), name)
    if path is not None and os.path.exists(path):
        clf = _load_classifier(path)
    else:
        clf = _train_classifier()
        if path is not None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            np.savez(path, **clf._asdict())
    _CLASSIFIERS[key] = clf
    return clf


def _digit_pixels(x, domain) -> np.ndarray:
    x = check_samples(x, "x", flatten=True)
    if x.shape[1] != 64:
        raise ValueError(f"Digits must have 64 pixels (8x8), got {x.shape[1]}.")
    lo, hi = check_domain(domain)
    lo0, hi0 = datasets.DIGITS_DOMAIN
    return lo0 + (hi0 - lo0) * (x - lo) / (hi - lo)


def classifier_features(x, domain=datasets.DIGITS_DOMAIN, cache_dir=None):
    """Hidden features ``(n, 64)`` of digit images ``(n, 8, 8, 1)`` in ``domain``."""
    return digits_classifier(cache_dir).features(_digit_pixels(x, domain))


def class_histogram(x, domain=datasets.DIGITS_DOMAIN, cache_dir=None) -> np.ndarray:
    """Share of images predicted as each class 0-9, shape ``(10,)``."""
    probs = digits_classifier(cache_dir).predict_proba(_digit_pixels(x, domain))
    return np.bincount(np.argmax(probs, axis=1), minlength=10) / len(probs)


def mean_confidence(x, domain=datasets.DIGITS_DOMAIN, cache_dir=None) -> float:
    """Mean of the classifier's top class probability over the images."""
    probs = digits_classifier(cache_dir).predict_proba(_digit_pixels(x, domain))
    return float(np.mean(np.max(probs, axis=1)))
