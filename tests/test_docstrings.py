"""Every ``>>>`` example of the package's docstrings runs and shows what it says.

The examples share a small namespace, as a reader's session would have it:
``deel_ebm``, ``tf``, ``np``, ``keras``; ``x``, 64 points of a 2D mixture;
``model``, a small EnergyModel trained one epoch on them; ``new_model``, the same
recipe untrained (a restore target). Each module's examples run in a fresh
temporary directory, so the files they write go nowhere else.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import numpy as np
import pytest
from conftest import mixture_2d, small_model

import deel_ebm
from deel_ebm._backend import keras, tf

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples(name):
    """The doctests defined in module ``name`` (not those it imports)."""
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [
        t
        for t in finder.find(module, name)
        if t.examples and getattr(t, "lineno", None) is not None
    ]


ALL_MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(deel_ebm.__path__, prefix="deel_ebm.")
    if info.name != "deel_ebm.__main__"
)
MODULES = [name for name in ALL_MODULES if _examples(name)]


@pytest.fixture(scope="module")
def namespace():
    tf.keras.utils.set_random_seed(0)
    x = mixture_2d(64)[0]
    model = small_model(capacity=256)
    model.fit(x, epochs=1, verbose=0)
    return {
        "deel_ebm": deel_ebm,
        "tf": tf,
        "np": np,
        "keras": keras,
        "x": x,
        "model": model,
        "new_model": small_model(capacity=256),
    }


def test_the_package_has_examples():
    assert sum(len(_examples(name)) for name in MODULES) >= 20, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, namespace, tmp_path, monkeypatch):
    tests = _examples(name)
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        test.globs = {**test.globs, **namespace}
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
