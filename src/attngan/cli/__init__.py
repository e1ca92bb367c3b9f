"""The ``attngan`` command: the group in :mod:`.group`, one sub-command per ``*_cmd`` module."""

from __future__ import annotations

from . import convert_cmd, evaluate_cmd, generate_cmd, serve_cmd, train_cmd  # noqa: F401  (each registers itself)
from .group import main, model_options

__all__ = ["main", "model_options"]
