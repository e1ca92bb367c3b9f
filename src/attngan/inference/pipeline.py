"""``AttnGANPipeline``: captions -> images of every stage, word attention maps, tokens used.

Two entries, one chain:

* text: ``pipe(captions, num_images=, seed=)`` tokenises and calls
* tensors: ``pipe.generate_from_tokens(tokens, lengths, seeds)`` (token ids from a data set or
  an evaluation), which encodes the text with the backend and calls
* features: ``pipe.generate_from_features(words, sentence, mask, seeds)``, which draws the
  noise and runs the backend's generator.

A :class:`~attngan.inference.backends.Backend` runs the model: the reference modules (exact,
fp32), their fused twins (fp32 or bf16) or ONNX Runtime. Randomness is per image: image ``j``
of a caption uses seed ``seed + j`` for its noise ``z`` and its conditioning-augmentation
noise, so the same seed gives the same image on every call, in any batch, on any device.
``truncation`` below 1.0 draws both from a truncated normal as DF-GAN samples
(:mod:`attngan.inference.noise`); 1.0 is off. A pipeline's default is the model folder's own
(``metadata.truncation`` of its ``config.json``), else 1.0. ``candidates`` K above 1 draws each
image K times and keeps the candidate the model's DAMSM matches best with its caption
(:mod:`attngan.inference.candidates`); the default is the model's own (``metadata.candidates``),
else 1.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import ModelConfig
from ..errors import SettingError
from ..hub import TRUNCATION_KEY, ModelBundle, checked_metadata, load_pretrained, save_pretrained
from ..precision import check_precision
from ..text import EncodedCaption, Vocabulary, pad_batch, tokenize
from ..viz import to_pil
from .backends import BACKENDS, Backend, FastBackend, ReferenceBackend, fp32_only
from .candidates import (
    check_candidates,
    match_scores,
    merge_candidates,
    model_candidates,
    require_image_encoder,
)
from .noise import check_truncation, draw_candidate_noise, draw_noise

log = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1
DEFAULT_MODEL = "shapes-64"


def _backend_choice(backend: Backend | str | None, exact: bool) -> Backend | str:
    """The backend ``backend`` and ``exact`` (the ``reference`` backend) ask for together."""
    if not exact:
        return "fast" if backend is None else backend
    if backend not in (None, "fast", "reference"):
        name = backend if isinstance(backend, str) else backend.name
        raise SettingError("exact", f"runs the reference modules; it cannot be combined with {{backend}} {name}")
    return "reference"


def model_truncation(bundle: ModelBundle) -> float:
    """The model's own default truncation: its folder's ``metadata.truncation``, else 1.0 (off);
    a value outside (0, 1] is a :class:`~attngan.config.ConfigError` naming the folder's file."""
    return checked_metadata(bundle, TRUNCATION_KEY, check_truncation, 1.0, "a number in (0, 1] (1.0: off)")


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Folder of a model shipped inside the package."""
    path = Path(str(resources.files("attngan") / "assets" / name))
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the bundled model {name!r} is not installed at {path}")
    return path


@dataclass
class PipelineOutput:
    """Result of one call; item ``i`` of every list belongs to image ``i``.

    ``images[s]`` is ``[N, 3, S_s, S_s]`` in [-1, 1] for stage ``s``; ``attention_maps[s]``
    is ``[N, T, H_s, W_s]`` for refinement stage ``s`` (its input resolution), T = the
    longest caption; rows beyond a caption's length are zero. ``captions`` is empty when the
    call came through the tensor entries.
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
                 exact: bool = False, backend: Backend | str | None = None, truncation: float | None = None,
                 candidates: int | None = None) -> None:
        self.bundle = bundle
        # the defaults of every call (1.0 / 1: off); None: the model's own (model_truncation, model_candidates)
        self.truncation = model_truncation(bundle) if truncation is None else check_truncation(truncation)
        self.candidates = model_candidates(bundle) if candidates is None else check_candidates(candidates)
        if self.candidates > 1:
            require_image_encoder(bundle)
        self.device = torch.device(device)
        self._requested_precision = check_precision(precision)
        choice = _backend_choice(backend, exact)
        self._backend = self._backend_named(choice) if isinstance(choice, str) else choice
        self._backend.bind(bundle, self.device, precision)
        self.precision = self._backend.precision
        for module in self.bundle.modules().values():
            module.to(self.device)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu",
                        precision: str = "auto", backend: Backend | str = "fast",
                        onnx_dir: str | os.PathLike[str] | None = None, exact: bool = False, *,
                        revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                        local_files_only: bool = False, truncation: float | None = None,
                        candidates: int | None = None) -> AttnGANPipeline:
        """Load a model folder (``config.json`` + ``model.safetensors`` + ``vocab.json``), or a
        Hugging Face Hub repo id ``org/name`` that is not a local path (``revision``,
        ``cache_dir``, ``local_files_only``: see :func:`attngan.hub.resolve_model_folder`);
        ``None`` loads the model bundled with the package. ``backend``: a
        :class:`~attngan.inference.backends.Backend` or its name (``exact=True``: ``reference``;
        ``onnx`` reads ``onnx_dir``, see :meth:`use_backend`); ``precision``: see :meth:`set_precision`;
        ``truncation``: the default of every call, whatever the backend (see :meth:`__call__`); None:
        the model's own (:func:`model_truncation`: its ``metadata.truncation``, else 1.0);
        ``candidates``: likewise (:mod:`attngan.inference.candidates`)."""
        if truncation is not None:
            truncation = check_truncation(truncation)  # before anything is loaded or exported
        if candidates is not None:
            candidates = check_candidates(candidates)
        folder = bundled_model_path() if path is None else path
        bundle = load_pretrained(folder, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
        choice = _backend_choice(backend, exact)
        if onnx_dir is not None and choice != "onnx":
            raise SettingError("onnx_dir", "needs {backend} onnx")
        if choice == "onnx":
            from .onnx import OnnxBackend

            fp32_only("the ONNX backend", check_precision(precision))  # before any export
            choice = OnnxBackend.for_bundle(bundle, onnx_dir, device)
        return cls(bundle, device=device, precision=precision, backend=choice, truncation=truncation,
                   candidates=candidates)

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        return save_pretrained(self.bundle, path)

    def to(self, device: str | torch.device) -> AttnGANPipeline:
        self.device = torch.device(device)
        for module in self.bundle.modules().values():
            module.to(self.device)
        return self.set_precision(self._requested_precision)

    @property
    def backend(self) -> Backend:
        """What runs the model (:mod:`attngan.inference.backends`): ``pipe.backend.name`` is
        ``reference``, ``fast`` or ``onnx``. Assign a backend object, or a name, to change it;
        it is bound to this pipeline's model, device and precision first (an error changes nothing)."""
        return self._backend

    @backend.setter
    def backend(self, backend: Backend | str) -> None:
        chosen = self._backend_named(backend) if isinstance(backend, str) else backend
        chosen.bind(self.bundle, self.device, self._requested_precision)
        self._backend, self.precision = chosen, chosen.precision

    @property
    def exact(self) -> bool:
        """True when the reference modules run (the ``reference`` backend, ``--exact``)."""
        return self._backend.name == "reference"

    def set_precision(self, precision: str, exact: bool | None = None) -> AttnGANPipeline:
        """``fp32``, ``bf16`` or ``auto`` (see :mod:`attngan.precision`).

        The ``fast`` backend runs the generator as its fused twin
        (:class:`~attngan.inference.fast.FastGenerator`: BatchNorm folded, sub-pixel up-sampling,
        fused activations; fp32 matches the reference to ~1e-6) in the precision chosen; the
        ``reference`` and ``onnx`` backends run in fp32 only. ``exact=True`` switches to the
        ``reference`` backend, ``exact=False`` from it to ``fast``; None keeps the backend.
        """
        check_precision(precision)
        backend = self._backend
        if exact is not None and bool(exact) != self.exact:
            backend = ReferenceBackend() if exact else FastBackend()
        backend.bind(self.bundle, self.device, precision)
        self._backend, self._requested_precision, self.precision = backend, precision, backend.precision
        return self

    def export_onnx(self, folder: str | os.PathLike[str]) -> Path:
        """Export the text encoder and generator to ONNX files (fp32 graphs) in ``folder``."""
        from .onnx import export_onnx

        return export_onnx(self.bundle, folder)

    def use_backend(self, backend: str = "fast", onnx_dir: str | os.PathLike[str] | None = None) -> AttnGANPipeline:
        """Run on the backend named ``backend`` (``fast``, ``reference`` or ``onnx``); ``onnx``
        runs ``onnx_dir`` (default: a folder of the cache,
        :func:`attngan.inference.onnx.default_onnx_dir`), exported there when missing or stale."""
        if onnx_dir is not None and backend != "onnx":
            raise SettingError("onnx_dir", "needs {backend} onnx")
        self.backend = self._backend_named(backend, onnx_dir)
        return self

    def _backend_named(self, name: str, onnx_dir: str | os.PathLike[str] | None = None) -> Backend:
        if name == "reference":
            return ReferenceBackend()
        if name == "fast":
            return FastBackend()
        if name == "onnx":
            from .onnx import OnnxBackend

            return OnnxBackend.for_bundle(self.bundle, onnx_dir, self.device)
        raise SettingError("backend", f"must be one of {', '.join(BACKENDS)}, got {name!r}")

    @property
    def config(self) -> ModelConfig:
        return self.bundle.config

    @property
    def vocab(self) -> Vocabulary:
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

    @property
    def example_captions(self) -> list[str]:
        """The model's example captions (``metadata.example_captions`` of its folder, see
        :mod:`attngan.hub.folders`) that have a word it knows; empty when the folder stores none."""
        vocab = self.bundle.vocab
        return [c for c in self.bundle.example_captions if vocab.encode_tokens(tokenize(c))[0]]

    @property
    def settings(self) -> dict[str, Any]:
        """How this pipeline generates; recorded in every output and export row."""
        return {"precision": self.precision, "exact": self.exact, "device": str(self.device), "model": self.name,
                "model_hash": self.model_hash, "backend": self._backend.name, "truncation": self.truncation,
                "candidates": self.candidates}

    # ------------------------------------------------------------------ steps
    def encode_captions(self, captions: Sequence[str]) -> list[EncodedCaption]:
        """Tokenise; raises ``UnknownWordsError`` naming a caption with no known word."""
        max_words = self.bundle.config.text_encoder.max_words
        return [self.bundle.vocab.encode(c, max_words) for c in captions]

    def make_noise(self, seeds: Sequence[int], truncation: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image ``(z [N, Z], eps [N, C])`` drawn on the CPU from each image's own seed
        (:func:`~attngan.inference.noise.draw_noise`; ``truncation`` None: :attr:`truncation`)."""
        cfg = self.bundle.config.generator
        z, eps = draw_noise(seeds, cfg.noise_dim, cfg.condition_dim, self._truncation(truncation))
        return z.to(self.device), eps.to(self.device)

    def _truncation(self, truncation: float | None) -> float:
        return self.truncation if truncation is None else check_truncation(truncation)

    def _candidates(self, candidates: int | None) -> int:
        count = self.candidates if candidates is None else check_candidates(candidates)
        if count > 1:
            require_image_encoder(self.bundle)
        return count

    # ------------------------------------------------------------------ entries
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
        truncation: float | None = None,
        candidates: int | None = None,
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
            truncation: in (0, 1]; below 1 the noise comes from a truncated normal, as DF-GAN
                samples (:mod:`attngan.inference.noise`); None: the pipeline's
                :attr:`truncation` (the model's own unless set). Recorded in ``settings``.
            candidates: draw each image this many times and keep the candidate the model's DAMSM
                matches best with its caption (:mod:`attngan.inference.candidates`); None: the
                pipeline's :attr:`candidates`. Recorded in ``settings``.
        """
        # 1. check the inputs
        items = [captions] if isinstance(captions, str) else list(captions)
        if not items:
            raise ValueError("captions: give at least one caption")
        if not all(isinstance(c, str) for c in items):
            raise TypeError("captions: every caption must be a string")
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        # 2. one seed per image
        seeds = self._seeds(len(items), num_images, seed, generator)
        # 3. tokenise (unknown words are reported in the output, a caption of unknown words only is an error)
        encoded_unique = self.encode_captions(items)
        encoded = [encoded_unique[i] for i in range(len(items)) for _ in range(num_images)]
        tokens, lengths = pad_batch([e.ids for e in encoded])
        # 4. encode the text and generate, batch by batch
        out = self.generate_from_tokens(tokens, lengths, seeds, num_stages, return_intermediates, batch_size,
                                        truncation, candidates)
        out.captions = encoded
        out.caption_indices = [i for i in range(len(items)) for _ in range(num_images)]
        return out

    @torch.inference_mode()
    def generate_from_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor, seeds: Sequence[int],
                             num_stages: int | None = None, return_intermediates: bool = False,
                             batch_size: int = 32, truncation: float | None = None,
                             candidates: int | None = None) -> PipelineOutput:
        """The tensor-level entry: token ids -> images.

        Args:
            tokens: ``[N, T]`` int64 token ids of the model's vocabulary, zero-padded.
            lengths: ``[N]`` real tokens per row (>= 1).
            seeds: ``N`` seeds, one per image.
            truncation, candidates: as :meth:`__call__`.
        Returns:
            A :class:`PipelineOutput` whose ``captions`` is empty; ``caption_indices`` is ``0..N-1``.
        """
        if tokens.dim() != 2 or lengths.shape != (tokens.shape[0],):
            raise ValueError(f"tokens must be [N, T] and lengths [N], got {tuple(tokens.shape)} and "
                             f"{tuple(lengths.shape)}")
        seeds = self._check_seeds(seeds, tokens.shape[0])
        truncation, candidates = self._truncation(truncation), self._candidates(candidates)
        parts = []
        for k in range(0, len(seeds), batch_size):
            rows = slice(k, k + batch_size)
            width = int(lengths[rows].max())
            batch = tokens[rows, :width].to(self.device)
            words, sentence = self._backend.encode_text(batch, lengths[rows])
            parts.append(self._generate(words, sentence, batch == 0, seeds[rows], num_stages, return_intermediates,
                                        truncation, candidates))
        return self._output(parts, seeds, truncation, candidates)

    @torch.inference_mode()
    def generate_from_features(self, word_features: torch.Tensor, sentence_features: torch.Tensor,
                               mask: torch.Tensor | None, seeds: Sequence[int], num_stages: int | None = None,
                               return_intermediates: bool = False, batch_size: int = 32,
                               truncation: float | None = None, candidates: int | None = None) -> PipelineOutput:
        """The lowest entry: text features -> images.

        Args:
            word_features: ``[N, D, T]`` (zero at padding).
            sentence_features: ``[N, D]``.
            mask: ``[N, T]`` bool, True at padded words (None: every word is real).
            seeds: ``N`` seeds, one per image.
            truncation, candidates: as :meth:`__call__`.
        """
        n = sentence_features.shape[0]
        seeds = self._check_seeds(seeds, n)
        truncation, candidates = self._truncation(truncation), self._candidates(candidates)
        if mask is None:
            mask = torch.zeros(n, word_features.shape[2], dtype=torch.bool)
        parts = [self._generate(word_features[k:k + batch_size].to(self.device).float(),
                                sentence_features[k:k + batch_size].to(self.device).float(),
                                mask[k:k + batch_size].to(self.device), seeds[k:k + batch_size], num_stages,
                                return_intermediates, truncation, candidates)
                 for k in range(0, n, batch_size)]
        return self._output(parts, seeds, truncation, candidates)

    # ------------------------------------------------------------------ internals
    def _generate(self, words: torch.Tensor, sentence: torch.Tensor, mask: torch.Tensor, seeds: list[int],
                  num_stages: int | None, keep: bool, truncation: float, candidates: int = 1) -> dict[str, Any]:
        if candidates == 1:
            noise, eps = self.make_noise(seeds, truncation)
            return self._draw(words, sentence, mask, noise, eps, num_stages, keep)
        cfg = self.bundle.config.generator
        encoder = require_image_encoder(self.bundle)
        best: dict[str, Any] = {}
        best_score = torch.empty(0)
        for z, e in draw_candidate_noise(seeds, cfg.noise_dim, cfg.condition_dim, truncation, candidates):
            drawn = self._draw(words, sentence, mask, z.to(self.device), e.to(self.device), num_stages, keep)
            score = match_scores(encoder, drawn["images"][-1], sentence).cpu()
            if not best:
                best, best_score = drawn, score
                continue
            better = score > best_score  # ties keep the earlier candidate
            best, best_score = merge_candidates(better, drawn, best), torch.where(better, score, best_score)
        return best

    def _draw(self, words: torch.Tensor, sentence: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor,
              eps: torch.Tensor, num_stages: int | None, keep: bool) -> dict[str, Any]:
        out = self._backend.generate(noise, eps, sentence, words, mask, num_stages)
        inter: dict[str, torch.Tensor] = {}
        if keep:
            inter = {"word_features": words.float(), "sentence_features": sentence.float(), "mu": out.mu.float(),
                     "logvar": out.logvar.float(), "condition": out.condition.float(), "noise": noise.float()}
        return {"images": [img.float() for img in out.images], "attention": [a.float() for a in out.attention_maps],
                "intermediates": inter}

    def _output(self, parts: list[dict[str, Any]], seeds: list[int], truncation: float,
                candidates: int) -> PipelineOutput:
        out = _concat(parts)
        return PipelineOutput(images=out["images"], attention_maps=out["attention"], captions=[], seeds=seeds,
                              caption_indices=list(range(len(seeds))), intermediates=out["intermediates"],
                              settings={"num_stages": len(out["images"]), **self.settings, "truncation": truncation,
                                        "candidates": candidates})

    @staticmethod
    def _check_seeds(seeds: Sequence[int], count: int) -> list[int]:
        out = [int(s) for s in seeds]
        if len(out) != count:
            raise ValueError(f"seeds: expected {count} seeds (one per image), got {len(out)}")
        if any(not 0 <= s <= MAX_SEED for s in out):
            raise ValueError(f"seeds must be between 0 and {MAX_SEED}")
        return out

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
        if isinstance(seed, bool):
            raise TypeError("seed must be an integer or one integer per image, not a bool")
        seeds = [int(s) for s in seed]
        if len(seeds) != total:
            raise ValueError(f"seed: expected one seed or {total} seeds, got {len(seeds)}")
        return seeds


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from per-batch results (attention and word features padded to the longest caption)."""
    if len(parts) == 1:
        return parts[0]
    width = max(p["attention"][0].shape[1] for p in parts) if parts[0]["attention"] else 0
    if "word_features" in parts[0]["intermediates"]:
        width = max(width, *(p["intermediates"]["word_features"].shape[2] for p in parts))

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
        tensors = [pad(p["intermediates"][key], 2) if key == "word_features" else p["intermediates"][key]
                   for p in parts]
        inter[key] = torch.cat(tensors)
    return {"images": images, "attention": attention, "intermediates": inter}

