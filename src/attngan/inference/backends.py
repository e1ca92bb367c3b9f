"""The ways a model can run behind :class:`~attngan.inference.pipeline.AttnGANPipeline`.

A backend does two things, on tensors: encode token ids into word and sentence features, and
run the generator from noise, condition noise, sentence and words. The pipeline does the rest
(tokenising, seeds, noise, batching, outputs), once, for every backend:

* :class:`ReferenceBackend` — the modules of :mod:`attngan.models` as they are (fp32 always):
  the original's computation, bound to it by the golden test.
* :class:`FastBackend` — the fused twins of :mod:`attngan.inference.fast` in fp32 or bf16.
* :class:`~attngan.inference.onnx.OnnxBackend` — an exported folder run by ONNX Runtime (fp32).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..hub import ModelBundle
from ..models.generator import GeneratorOutput
from ..precision import dtype_of, full_precision


@runtime_checkable
class Backend(Protocol):
    """What the pipeline needs of a way to run a model."""

    name: str  # "reference" | "fast" | "onnx"
    precision: str  # the precision it runs in: "fp32" or "bf16"

    def encode_text(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens [B, T]`` (int64, zero-padded), ``lengths [B]`` -> ``(words [B, D, T], sentence [B, D])`` fp32."""
        ...

    def generate(self, noise: torch.Tensor, eps: torch.Tensor, sentence: torch.Tensor, words: torch.Tensor,
                 mask: torch.Tensor, num_stages: int | None) -> GeneratorOutput:
        """``noise [B, Z]``, ``eps [B, C]``, ``sentence [B, D]``, ``words [B, D, T]``, ``mask [B, T]``
        (True at padding) -> images ``[B, 3, S, S]`` per stage and attention ``[B, T, H, W]`` per
        refinement stage, float32."""
        ...


class ReferenceBackend:
    """The reference modules, fp32 (the exact path)."""

    name = "reference"
    precision = "fp32"

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    def encode_text(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with full_precision(tokens.device):
            return self.bundle.text_encoder(tokens, lengths)

    def generate(self, noise: torch.Tensor, eps: torch.Tensor, sentence: torch.Tensor, words: torch.Tensor,
                 mask: torch.Tensor, num_stages: int | None) -> GeneratorOutput:
        return self.bundle.generator(noise, sentence, words, mask, eps=eps, num_stages=num_stages)


class FastBackend:
    """The fused generator (:class:`~attngan.inference.fast.FastGenerator`) in ``precision``, and the
    text encoder without sequence packing (fp32). The fused copy is built on first use: rebuild
    the backend after the bundle's weights change."""

    name = "fast"

    def __init__(self, bundle: ModelBundle, precision: str) -> None:
        self.bundle = bundle
        self.precision = precision
        self.dtype = dtype_of(precision)
        self._generator: torch.nn.Module | None = None

    @property
    def generator(self) -> torch.nn.Module:
        if self._generator is None:
            from .fast import FastGenerator

            self._generator = FastGenerator(self.bundle.generator.eval(), dtype=self.dtype)
        return self._generator

    def encode_text(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .fast import encode_text

        with full_precision(tokens.device):
            return encode_text(self.bundle.text_encoder, tokens, lengths)

    def generate(self, noise: torch.Tensor, eps: torch.Tensor, sentence: torch.Tensor, words: torch.Tensor,
                 mask: torch.Tensor, num_stages: int | None) -> GeneratorOutput:
        return self.generator(noise, sentence, words, mask, eps=eps, num_stages=num_stages)
