"""A fresh GAN run that starts from a saved model folder (``init_from: MODEL``): its generator, and
the discriminators that were trained beside it where the folder keeps them.

A run's exported model folder holds, beside the inference files, ``discriminators.safetensors``:
the discriminators' (and the encoder discriminator's) weights at the exported step, tagged with a
fingerprint of the generator they judged (its weights rounded to float16, so that a copy re-saved
at half precision keeps them). Inference never reads the file. A run started from the folder takes
them back when the fingerprint matches its generator; a stale file (the folder's generator
replaced since) is ignored with a warning, and the discriminators start fresh.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..config import GeneratorConfig
from ..files import write_safetensors
from ..fingerprint import state_fingerprint
from ..hub import load_pretrained
from ..text import Vocabulary
from .checkpoint import CheckpointError
from .ema import EMA

log = logging.getLogger(__name__)

JUDGES_NAME = "discriminators.safetensors"
JUDGES_FORMAT = "attngan-discriminators"
ENCODER_PREFIX = "encoder_discriminator."


class Judges(NamedTuple):
    """Discriminator weights kept with a model: one state per stage's discriminator, and the
    encoder discriminator's modules' (``head``, and ``backbone`` where trainable; empty when the
    run had none)."""

    discriminators: list[dict[str, torch.Tensor]]
    encoder_discriminator: dict[str, dict[str, torch.Tensor]]


class ModelStart(NamedTuple):
    """A model folder's generator weights (float32), where they came from (the folder, the SHA-256
    prefix of its weights, its recorded training steps: 0 when it records none), and the
    discriminators trained beside it (None when the folder keeps none that belong to it)."""

    state: dict[str, torch.Tensor]
    model: str
    sha256: str
    steps: int
    judges: Judges | None


def generator_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a generator's weights rounded to float16, in key order: the same for a float32
    folder and its float16 copy."""
    return state_fingerprint({k: v.half() if v.is_floating_point() else v for k, v in state.items()})


def save_judges(folder: Path, generator_state: dict[str, torch.Tensor], discriminators: Sequence[nn.Module],
                encoder_discriminator: dict[str, nn.Module]) -> Path:
    """Write ``folder/discriminators.safetensors`` atomically: each discriminator's weights under its
    stage index (``0.``, ``1.`` ...), the encoder discriminator's modules' under
    ``encoder_discriminator.NAME.``, tagged with :func:`generator_fingerprint` of ``generator_state``."""
    state = {f"{i}.{k}": v.detach().cpu().contiguous() for i, d in enumerate(discriminators)
             for k, v in d.state_dict().items()}
    for name, module in encoder_discriminator.items():
        state.update({f"{ENCODER_PREFIX}{name}.{k}": v.detach().cpu().contiguous()
                      for k, v in module.state_dict().items()})
    path = folder / JUDGES_NAME
    write_safetensors(state, path, metadata={"format": JUDGES_FORMAT, "generator": generator_fingerprint(generator_state)})
    return path


def load_judges(folder: Path, generator_state: dict[str, torch.Tensor]) -> Judges | None:
    """The discriminators kept in ``folder`` for the generator ``generator_state``; None when there
    is no such file or it belongs to another generator (logged). A damaged file raises
    :class:`CheckpointError` naming it."""
    path = folder / JUDGES_NAME
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"init_from: {path} is truncated or corrupt ({exc})") from None
    if meta.get("format") != JUDGES_FORMAT:
        raise CheckpointError(f"init_from: {path} is not a discriminators file (format {meta.get('format')!r})")
    if meta.get("generator") != generator_fingerprint(generator_state):
        log.warning("%s belongs to another generator than this folder's (the folder was saved over since): "
                    "the discriminators start fresh", path)
        return None
    stages: dict[int, dict[str, torch.Tensor]] = {}
    encoder: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(ENCODER_PREFIX):
            module, _, name = key[len(ENCODER_PREFIX):].partition(".")
            encoder.setdefault(module, {})[name] = value
            continue
        stage, _, name = key.partition(".")
        if not stage.isdigit():
            raise CheckpointError(f"init_from: {path} holds a tensor {key!r} of no discriminator")
        stages.setdefault(int(stage), {})[name] = value
    if sorted(stages) != list(range(len(stages))):
        raise CheckpointError(f"init_from: {path} holds discriminators {sorted(stages)}, not stages 0, 1, ...")
    return Judges([stages[i] for i in range(len(stages))], encoder)


def read_model_start(path: Path, vocab: Vocabulary, vocab_source: Path, generator: GeneratorConfig) -> ModelStart:
    """The generator of the model folder ``path`` (float16 weights widened to float32) and the
    discriminators kept with it, checked to fit a run whose vocabulary is ``vocab`` (read from
    ``vocab_source``) and whose generator is ``generator``.

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
                      steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else 0,
                      load_judges(path, state))


class Modules(NamedTuple):
    """The modules of a run that a model folder can start: the generator, its EMA, the
    discriminators (one per stage) and the encoder discriminator's trained modules (by name)."""

    generator: nn.Module
    ema: EMA
    discriminators: list[nn.Module]
    encoder_discriminator: dict[str, nn.Module]


def start_from_model(path: Path, vocab: Vocabulary, vocab_source: Path, generator: GeneratorConfig,
                     modules: Modules) -> dict[str, object]:
    """Load the model folder ``path`` into ``modules``: the generator and its EMA from the folder's
    generator (the EMA counts the folder's steps as its past updates, so that its warm-up forgets
    nothing), the discriminators from those kept with it (else they stay fresh). Returns what the
    run records as ``started_from``. Raises :class:`CheckpointError` naming what does not fit."""
    start = read_model_start(path, vocab, vocab_source, generator)
    modules.generator.load_state_dict(start.state)
    modules.ema.shadow.load_state_dict(start.state)
    modules.ema.num_updates.fill_(start.steps)
    judges = start.judges
    if judges is not None:
        try:
            for d, state in zip(modules.discriminators, judges.discriminators, strict=True):
                d.load_state_dict(state)
            ours, kept = modules.encoder_discriminator, judges.encoder_discriminator
            if ours and kept:  # else the encoder discriminator starts fresh
                if ours.keys() != kept.keys():
                    raise ValueError(f"its encoder discriminator has {sorted(kept)}, this run's {sorted(ours)}")
                for name, module in ours.items():
                    module.load_state_dict(kept[name])
        except (RuntimeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise CheckpointError(f"init_from: {path / JUDGES_NAME} does not fit this run's discriminators: "
                                  f"{reason}") from None
    log.info("generator starts from the model folder %s (its step %s); discriminators %s", path, start.steps,
             "from it" if judges is not None else "fresh (it keeps none for this generator)")
    return {"model": start.model, "sha256": start.sha256, "steps": start.steps, "discriminators": judges is not None}
