"""Run the cells of a grid that are not cached yet, in-process or in workers."""

from __future__ import annotations

import multiprocessing
import sys
import time

from benchmarks.study import cache, grid

_SETTINGS = None


def _init_worker(settings, threads):
    global _SETTINGS
    _SETTINGS = settings
    import tensorflow as tf

    import deel_ebm  # noqa: F401  (before TensorFlow)

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def compute(cell, settings) -> dict:
    """The record of one cell: its parameters, its result and provenance."""
    import warnings

    from benchmarks.study import questions
    from deel_ebm.app import runs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = questions.RUNNERS[cell["kind"]](cell, settings)
    return runs.to_jsonable(
        {
            "cell": cell,
            "settings_tag": settings["tag"],
            "settings_hash": grid.settings_hash(settings),
            "result": result,
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )


def _work(args):
    cell, cells_dir = args
    cid = grid.cell_id(cell, _SETTINGS)
    cache.save(cells_dir, cid, compute(cell, _SETTINGS))
    return cid


def run(cells, settings, cells_dir, workers=1) -> dict:
    """Compute the missing cells; returns counts ``{"cached", "computed"}``."""
    todo = [
        c for c in cells if cache.load(cells_dir, grid.cell_id(c, settings)) is None
    ]
    counts = {"cached": len(cells) - len(todo), "computed": 0}
    print(f"study: {len(cells)} cells, {counts['cached']} cached, {len(todo)} to run")
    if not todo:
        return counts
    if workers <= 1:
        _init_worker(settings, 0)
        for i, cell in enumerate(todo):
            cid = _work((cell, cells_dir))
            counts["computed"] += 1
            print(f"  [{i + 1}/{len(todo)}] {cid}", flush=True)
        return counts
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, _init_worker, (settings, 1), maxtasksperchild=None) as pool:
        jobs = [(c, str(cells_dir)) for c in todo]
        for i, cid in enumerate(pool.imap_unordered(_work, jobs)):
            counts["computed"] += 1
            print(f"  [{i + 1}/{len(todo)}] {cid}", flush=True)
    sys.stdout.flush()
    return counts
