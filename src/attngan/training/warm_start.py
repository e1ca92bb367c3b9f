"""A fresh GAN run that starts from a saved model folder's generator (``init_from: MODEL``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import torch

from ..config import GeneratorConfig
from ..hub import load_pretrained
from ..text import Vocabulary
from .checkpoint import CheckpointError


class ModelStart(NamedTuple):
    """A model folder's generator weights (float32) and where they came from: the folder, the
    SHA-256 prefix of its weights and its recorded training steps (0 when it records none)."""

    state: dict[str, torch.Tensor]
    model: str
    sha256: str
    steps: int


def model_generator_state(path: Path, vocab: Vocabulary, vocab_source: Path, generator: GeneratorConfig) -> ModelStart:
    """The generator of the model folder ``path`` (float16 weights widened to float32), checked to
    fit a run whose vocabulary is ``vocab`` (read from ``vocab_source``) and whose generator is
    ``generator``.

    Raises :class:`CheckpointError` naming ``init_from``, the folder and what does not fit: a
    folder that does not load, another vocabulary, or each generator field that differs.
    """
    try:
        bundle = load_pretrained(path)
    except (OSError, ValueError) as exc:  # ConfigError and damaged weights too
        raise CheckpointError(f"init_from: {path} does not load as a model folder: {exc}") from None
    if bundle.vocab.words != vocab.words:
        raise CheckpointError(f"init_from: {path} has another vocabulary ({len(bundle.vocab)} words) than "
                              f"{vocab_source} ({len(vocab)} words)")
    theirs = bundle.config.generator
    differ = [f.name for f in dataclasses.fields(generator) if getattr(generator, f.name) != getattr(theirs, f.name)]
    if differ:
        shown = ", ".join(f"{n} {getattr(theirs, n)!r} (this run {getattr(generator, n)!r})" for n in differ)
        raise CheckpointError(f"init_from: {path}'s generator does not fit this run: {shown}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in bundle.generator.state_dict().items()}
    steps = bundle.metadata.get("steps")
    return ModelStart(state, str(path), str(bundle.metadata.get("sha256", "")),
                      steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else 0)
