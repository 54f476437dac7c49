"""The application: run folders, evaluation and the ``deel-ebm`` command.

Built on the public API of the library; nothing in the library imports it.
"""

from deel_ebm.app import cli, evaluation, runs
from deel_ebm.app.runs import RunConfig, build_model, load_run, train_run

__all__ = [
    "cli",
    "evaluation",
    "runs",
    "RunConfig",
    "build_model",
    "train_run",
    "load_run",
]
