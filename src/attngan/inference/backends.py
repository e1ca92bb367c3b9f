"""The ways a model can run behind :class:`~attngan.inference.pipeline.AttnGANPipeline`: the
pipeline's ``backend``, an object the caller can hand over, as diffusers' schedulers are::

    pipe = AttnGANPipeline.from_pretrained(folder, backend="reference")   # by name
    pipe.backend = OnnxBackend("onnx/")                                  # or an object
    pipe = AttnGANPipeline(bundle, backend=FastBackend())

A backend does two things, on tensors: encode token ids into word and sentence features, and
run the generator from noise, condition noise, sentence and words. The pipeline does the rest
(tokenising, seeds, noise, batching, outputs), once, for every backend. One set of names,
everywhere (``Backend.name``, records' ``generation.backend``, the CLI's ``--backend``):

* ``reference`` -- :class:`ReferenceBackend`: the modules of :mod:`attngan.models` as they are
  (fp32 always): the original's computation, bound to it by the golden test (``--exact``).
* ``fast`` -- :class:`FastBackend`: the fused twins of :mod:`attngan.inference.fast` in fp32 or
  bf16 (the default).
* ``onnx`` -- :class:`~attngan.inference.onnx.OnnxBackend`: an exported folder run by ONNX
  Runtime (fp32).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..errors import SettingError
from ..hub import ModelBundle
from ..models.generator import GeneratorOutput
from ..precision import dtype_of, full_precision, resolve_precision

BACKENDS = ("fast", "reference", "onnx")


@runtime_checkable
class Backend(Protocol):
    """What the pipeline needs of a way to run a model."""

    name: str  # one of BACKENDS
    precision: str  # the precision it runs in once bound: "fp32" or "bf16"

    def bind(self, bundle: ModelBundle, device: torch.device, precision: str) -> None:
        """Prepare to run ``bundle`` on ``device`` in ``precision`` (``auto``, ``fp32`` or ``bf16``,
        resolved into :attr:`precision`); raises :class:`~attngan.errors.SettingError` (field
        ``precision``) for a precision it cannot run, changing nothing."""
        ...

    def encode_text(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens [B, T]`` (int64, zero-padded), ``lengths [B]`` -> ``(words [B, D, T], sentence [B, D])`` fp32."""
        ...

    def generate(self, noise: torch.Tensor, eps: torch.Tensor, sentence: torch.Tensor, words: torch.Tensor,
                 mask: torch.Tensor, num_stages: int | None) -> GeneratorOutput:
        """``noise [B, Z]``, ``eps [B, C]``, ``sentence [B, D]``, ``words [B, D, T]``, ``mask [B, T]``
        (True at padding) -> images ``[B, 3, S, S]`` per stage and attention ``[B, T, H, W]`` per
        refinement stage, float32."""
        ...


def fp32_only(what: str, precision: str) -> str:
    """``fp32`` for ``auto`` or ``fp32``; a :class:`SettingError` for ``bf16``."""
    if precision == "bf16":
        raise SettingError("precision", f"{what} runs in fp32; use precision='fp32' or 'auto'")
    return "fp32"


class _Bound:
    """The bundle a backend was bound to (an error before :meth:`Backend.bind`)."""

    _bundle: ModelBundle | None = None

    @property
    def bundle(self) -> ModelBundle:
        if self._bundle is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a model: hand it to a pipeline first")
        return self._bundle


class ReferenceBackend(_Bound):
    """The reference modules, fp32 (the exact path)."""

    name = "reference"
    precision = "fp32"

    def __init__(self, bundle: ModelBundle | None = None) -> None:
        self._bundle = bundle

    def bind(self, bundle: ModelBundle, device: torch.device, precision: str) -> None:
        self.precision = fp32_only("the exact path", precision)
        self._bundle = bundle

    def encode_text(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with full_precision(tokens.device):
            return self.bundle.text_encoder(tokens, lengths)

    def generate(self, noise: torch.Tensor, eps: torch.Tensor, sentence: torch.Tensor, words: torch.Tensor,
                 mask: torch.Tensor, num_stages: int | None) -> GeneratorOutput:
        return self.bundle.generator(noise, sentence, words, mask, eps=eps, num_stages=num_stages)


class FastBackend(_Bound):
    """The fused generator (:class:`~attngan.inference.fast.FastGenerator`) in its precision, and
    the text encoder without sequence packing (fp32). The fused copy is built on first use and
    again on each :meth:`bind` (so a bundle whose weights changed is bound anew)."""

    name = "fast"

    def __init__(self, bundle: ModelBundle | None = None, precision: str = "fp32") -> None:
        self._bundle = bundle
        self.precision = precision
        self.dtype = dtype_of(precision)
        self._generator: torch.nn.Module | None = None

    def bind(self, bundle: ModelBundle, device: torch.device, precision: str) -> None:
        self.precision = resolve_precision(precision, device)
        self.dtype = dtype_of(self.precision)
        self._bundle = bundle
        self._generator = None

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
