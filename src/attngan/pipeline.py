"""``AttnGANPipeline``: captions -> images of every stage, word attention maps, tokens used.

Randomness is per image: image ``j`` of a caption uses seed ``seed + j`` for its noise
``z`` and its conditioning-augmentation noise, so the same seed gives the same image on
every call, in any batch, on any device.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .hub import ModelBundle, load_pretrained, save_pretrained
from .text import EncodedCaption, pad_batch

if TYPE_CHECKING:
    from .onnx_export import OnnxBackend

log = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1
DEFAULT_MODEL = "shapes-64"


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Folder of a model shipped inside the package."""
    path = Path(str(resources.files("attngan") / "assets" / name))
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the bundled model {name!r} is not installed at {path}")
    return path


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """``[N, 3, H, W]`` in [-1, 1] -> PIL RGB images."""
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in arr]


@dataclass
class PipelineOutput:
    """Result of one call; item ``i`` of every list belongs to image ``i``.

    ``images[s]`` is ``[N, 3, S_s, S_s]`` in [-1, 1] for stage ``s``; ``attention_maps[s]``
    is ``[N, T, H_s, W_s]`` for refinement stage ``s`` (its input resolution), T = the
    longest caption; rows beyond a caption's ``len(tokens)`` are zero.
    """

    images: list[torch.Tensor]
    attention_maps: list[torch.Tensor]
    captions: list[EncodedCaption]
    seeds: list[int]
    caption_indices: list[int]
    intermediates: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def pil(self, stage: int = -1) -> list[Image.Image]:
        """The images of one stage (default: the last) as PIL images."""
        return to_pil(self.images[stage])

    def __len__(self) -> int:
        return len(self.seeds)


class AttnGANPipeline:
    """Text-to-image generation with a trained or converted AttnGAN.

    Example::

        pipe = AttnGANPipeline.from_pretrained()          # the bundled shapes model
        out = pipe("a small red circle on the left", num_images=2, seed=0)
        out.pil()[0].save("circle.png")
    """

    def __init__(self, bundle: ModelBundle, device: str | torch.device = "cpu", precision: str = "auto",
                 exact: bool = False) -> None:
        self.bundle = bundle
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.exact = exact  # True: the reference modules; False: the fused copy (attngan.fast)
        self._requested_precision = precision
        self._fast_generator: torch.nn.Module | None = None  # built on first use
        self.onnx_backend: OnnxBackend | None = None  # set by use_backend("onnx")
        self.to(device)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu",
                        precision: str = "auto", backend: str = "torch",
                        onnx_dir: str | os.PathLike[str] | None = None, exact: bool = False, *,
                        revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                        local_files_only: bool = False) -> AttnGANPipeline:
        """Load a model folder (``config.json`` + ``model.safetensors`` + ``vocab.json``), or a
        Hugging Face Hub repo id ``org/name`` that is not a local path (``revision``,
        ``cache_dir``, ``local_files_only``: see :func:`attngan.hub.resolve_model_folder`);
        ``None`` loads the model bundled with the package. ``backend``: see :meth:`use_backend`;
        ``precision`` and ``exact``: see :meth:`set_precision`."""
        folder = bundled_model_path() if path is None else path
        bundle = load_pretrained(folder, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
        return cls(bundle, device=device, precision=precision, exact=exact).use_backend(backend, onnx_dir)

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        return save_pretrained(self.bundle, path)

    def to(self, device: str | torch.device) -> AttnGANPipeline:
        self.device = torch.device(device)
        for module in self.bundle.modules().values():
            module.to(self.device)
        return self.set_precision(self._requested_precision)

    def set_precision(self, precision: str, exact: bool | None = None) -> AttnGANPipeline:
        """``fp32``, ``bf16`` or ``auto`` (bf16 where the device has native bf16 arithmetic, else fp32).

        With ``exact=False`` (the default) the generator runs as its fused inference copy
        (:class:`attngan.fast.FastGenerator`: BatchNorm folded, sub-pixel up-sampling, fused
        activations; fp32 matches the reference to ~1e-6). ``exact=True`` runs the reference
        modules (``bf16``: under autocast). ``exact=None`` keeps the current choice.
        """
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
        if exact is not None:
            self.exact = bool(exact)
        self._requested_precision = precision
        if precision == "auto":  # bf16 only on the fast path, and only where the hardware has it
            from .fast import resolve_precision

            precision = resolve_precision("auto", self.device) if not self.exact and self.onnx_backend is None else "fp32"
        self.precision = precision
        self._fast_generator = None
        return self

    def _generator(self) -> torch.nn.Module:
        """The module that generates: the reference generator or its fused copy."""
        if self.exact:
            return self.bundle.generator
        if self._fast_generator is None:
            from .fast import FastGenerator

            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            self._fast_generator = FastGenerator(self.bundle.generator.eval(), dtype=dtype)
        return self._fast_generator

    # ------------------------------------------------------------------ ONNX Runtime backend
    def export_onnx(self, folder: str | os.PathLike[str]) -> Path:
        """Export the text encoder and generator to ONNX files in ``folder``."""
        from .onnx_export import export_onnx

        return export_onnx(self.bundle, folder)

    def use_backend(self, backend: str = "torch", onnx_dir: str | os.PathLike[str] | None = None) -> AttnGANPipeline:
        """Run the torch modules (``torch``) or ONNX Runtime (``onnx``, fp32) from ``onnx_dir``;
        by default ``<model folder>/onnx``, exported there on first use."""
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        if backend == "torch":
            self.onnx_backend = None
            return self
        from .onnx_export import OnnxBackend

        self.onnx_backend = OnnxBackend.for_bundle(self.bundle, onnx_dir, self.device)
        return self.set_precision(self._requested_precision)

    @property
    def backend(self) -> str:
        return "torch" if self.onnx_backend is None else "onnx"

    @property
    def config(self) -> Any:
        return self.bundle.config

    @property
    def vocab(self) -> Any:
        return self.bundle.vocab

    @property
    def name(self) -> str:
        return self.bundle.config.name

    @property
    def model_hash(self) -> str:
        return str(self.bundle.metadata.get("sha256", ""))

    @property
    def num_stages(self) -> int:
        return self.bundle.config.generator.num_stages

    # ------------------------------------------------------------------ steps
    def encode_captions(self, captions: Sequence[str]) -> list[EncodedCaption]:
        """Tokenise; raises ``UnknownWordsError`` naming a caption with no known word."""
        max_words = self.bundle.config.text_encoder.max_words
        return [self.bundle.vocab.encode(c, max_words) for c in captions]

    def encode_text(self, encoded: Sequence[EncodedCaption]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(word_features [N, D, T], sentence [N, D], mask [N, T])`` on the pipeline's device."""
        tokens, lengths = pad_batch([e.ids for e in encoded])
        tokens = tokens.to(self.device)
        # fp32 even under bf16 autocast: the LSTM is cheap, and oneDNN has no bf16 LSTM on CPUs
        # without native bf16 (it raises "could not create a primitive descriptor")
        with torch.autocast(self.device.type, enabled=False):
            if self.exact:
                words, sentence = self.bundle.text_encoder(tokens, lengths)
            else:  # the same function without sequence packing when the lengths are equal
                from .fast import encode_text

                words, sentence = encode_text(self.bundle.text_encoder, tokens, lengths)
        return words, sentence, tokens == 0

    def make_noise(self, seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image ``(z [N, Z], eps [N, C])`` drawn on the CPU from each image's own seed."""
        cfg = self.bundle.config.generator
        zs, eps = [], []
        for s in seeds:
            g = torch.Generator().manual_seed(int(s))
            zs.append(torch.randn(cfg.noise_dim, generator=g))
            eps.append(torch.randn(cfg.condition_dim, generator=g))
        return torch.stack(zs).to(self.device), torch.stack(eps).to(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16" and self.exact:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ call
    @torch.inference_mode()
    def __call__(
        self,
        captions: str | Sequence[str],
        num_images: int = 1,
        seed: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        num_stages: int | None = None,
        return_intermediates: bool = False,
        batch_size: int = 32,
    ) -> PipelineOutput:
        """Generate ``num_images`` images per caption.

        Args:
            captions: one caption or a list.
            num_images: images per caption (>= 1).
            seed: base seed (image ``j`` of each caption uses ``seed + j``), or one seed per
                output image (``len(captions) * num_images`` of them). If None, seeds are
                drawn from ``generator`` or, without one, from the OS; they are recorded.
            num_stages: stop after this many stages (default: all).
            return_intermediates: keep text features and conditioning (for explanations).
            batch_size: images per forward pass (results do not depend on it).
        """
        items = [captions] if isinstance(captions, str) else list(captions)
        if not items:
            raise ValueError("captions: give at least one caption")
        if not all(isinstance(c, str) for c in items):
            raise TypeError("captions: every caption must be a string")
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        seeds = self._seeds(len(items), num_images, seed, generator)
        encoded_unique = self.encode_captions(items)
        encoded = [encoded_unique[i] for i in range(len(items)) for _ in range(num_images)]
        caption_indices = [i for i in range(len(items)) for _ in range(num_images)]
        parts = [self._generate(encoded[k:k + batch_size], seeds[k:k + batch_size], num_stages, return_intermediates)
                 for k in range(0, len(seeds), batch_size)]
        out = _concat(parts)
        return PipelineOutput(images=out["images"], attention_maps=out["attention"], captions=encoded, seeds=seeds,
                              caption_indices=caption_indices, intermediates=out["intermediates"],
                              settings={"num_stages": len(out["images"]), "precision": self.precision,
                                        "exact": self.exact,
                                        "device": str(self.device), "model": self.name, "model_hash": self.model_hash,
                                        "backend": self.backend})

    def _seeds(self, n_captions: int, num_images: int, seed: int | Sequence[int] | None,
               generator: torch.Generator | None) -> list[int]:
        total = n_captions * num_images
        if seed is None:
            if generator is not None:
                base = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            else:
                base = secrets.randbelow(2**31 - 1)
            return [base + j for _ in range(n_captions) for j in range(num_images)]
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            if not 0 <= int(seed) <= MAX_SEED - num_images:
                raise ValueError(f"seed must be between 0 and {MAX_SEED - num_images}, got {seed}")
            return [int(seed) + j for _ in range(n_captions) for j in range(num_images)]
        seeds = [int(s) for s in seed]
        if len(seeds) != total:
            raise ValueError(f"seed: expected one seed or {total} seeds, got {len(seeds)}")
        return seeds

    def _generate(self, encoded: list[EncodedCaption], seeds: list[int], num_stages: int | None,
                  keep: bool) -> dict[str, Any]:
        if self.onnx_backend is not None:  # ONNX Runtime instead of the torch modules
            return self.onnx_backend.generate(self, encoded, seeds, num_stages, keep)
        with self._autocast():
            words, sentence, mask = self.encode_text(encoded)
            noise, eps = self.make_noise(seeds)
            out = self._generator()(noise, sentence, words, mask, eps=eps, num_stages=num_stages)
        images = [img.float() for img in out.images]
        attention = [a.float() for a in out.attention_maps]
        inter: dict[str, torch.Tensor] = {}
        if keep:
            inter = {"word_features": words.float(), "sentence_features": sentence.float(), "mu": out.mu.float(),
                     "logvar": out.logvar.float(), "condition": out.condition.float(), "noise": noise.float()}
        return {"images": images, "attention": attention, "intermediates": inter}


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if len(parts) == 1:
        return parts[0]
    width = max(p["attention"][0].shape[1] for p in parts) if parts[0]["attention"] else 0

    def pad(t: torch.Tensor, dim: int) -> torch.Tensor:
        if t.shape[dim] == width:
            return t
        shape = list(t.shape)
        shape[dim] = width - t.shape[dim]
        return torch.cat([t, t.new_zeros(shape)], dim)

    images = [torch.cat([p["images"][s] for p in parts]) for s in range(len(parts[0]["images"]))]
    attention = [torch.cat([pad(p["attention"][s], 1) for p in parts]) for s in range(len(parts[0]["attention"]))]
    inter: dict[str, torch.Tensor] = {}
    for key in parts[0]["intermediates"]:
        dim = 2 if key == "word_features" else None
        tensors = [pad(p["intermediates"][key], 2) if dim else p["intermediates"][key] for p in parts]
        inter[key] = torch.cat(tensors)
    return {"images": images, "attention": attention, "intermediates": inter}


def iter_batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for k in range(0, len(items), size):
        yield items[k:k + size]
