"""The ``attngan`` command: the group in :mod:`.group`, one sub-command per ``*_cmd`` module."""

from __future__ import annotations

from . import (  # noqa: F401  (each registers itself)
    convert_cmd,
    evaluate_cmd,
    explain_cmd,
    generate_cmd,
    serve_cmd,
    train_cmd,
    tune_truncation_cmd,
)
from .group import main, model_options
from .process import run_command


def entry() -> None:
    """The ``attngan`` console script: :data:`main`, ending as :func:`.process.exit_process` says."""
    run_command(main)


__all__ = ["entry", "main", "model_options"]
