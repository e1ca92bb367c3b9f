"""Best of K: each image is drawn as ``K`` candidates and the one whose image the model's own
DAMSM encoders match best with its caption is kept.

The score of a candidate is the cosine similarity of its final image's global code (the DAMSM
image encoder) with its caption's sentence feature (the text encoder that conditioned it) --
the score AttnGAN's R-precision ranks captions by. So an evaluation of R-precision with the same
encoders is no longer an independent measure when ``K > 1``; attribute accuracy by the separate
classifier is. Candidate ``k`` of an image takes the ``k``-th noise pair of its seed
(:func:`~attngan.inference.noise.draw_candidate_noise`): candidate 0 is the image drawn without
candidates, so ``K = 1`` is the plain pipeline bit for bit, and the same seed and ``K`` give the
same image. Ties keep the earlier candidate.

A model folder may name its own default (``metadata.candidates`` of its ``config.json``), chosen
on validation captions as its truncation is (``attngan tune-truncation --candidates K --write``).
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SettingError
from ..hub import CANDIDATES_KEY, ModelBundle, checked_metadata


def check_candidates(candidates: int) -> int:
    """``candidates`` as an int >= 1, or a :class:`~attngan.errors.SettingError` of field
    ``candidates`` (a TypeError for what is not an integer)."""
    if isinstance(candidates, bool) or not isinstance(candidates, numbers.Integral):
        raise TypeError(f"candidates must be an integer >= 1, got {type(candidates).__name__}")
    if int(candidates) < 1:
        raise SettingError("candidates", f"must be >= 1 (1: off), got {candidates}")
    return int(candidates)


def model_candidates(bundle: ModelBundle) -> int:
    """The model's own default: its folder's ``metadata.candidates``, else 1 (off); a value that
    is not an integer >= 1 is a :class:`~attngan.config.ConfigError` naming the folder's file."""
    return checked_metadata(bundle, CANDIDATES_KEY, check_candidates, 1, "an integer >= 1 (1: off)")


def require_image_encoder(bundle: ModelBundle) -> nn.Module:
    """The bundle's DAMSM image encoder, which choosing among candidates needs."""
    if bundle.image_encoder is None:
        raise SettingError("candidates", f"choosing among candidates needs the model's DAMSM image encoder; "
                                         f"{bundle.config.name} has none (use candidates=1)")
    return bundle.image_encoder


def match_scores(image_encoder: nn.Module, images: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
    """``[N]`` fp32 cosine of each image's global code with its caption's sentence feature.

    Args:
        image_encoder: a DAMSM image encoder (``images -> (regions, codes [N, D])``), in eval mode.
        images: ``[N, 3, S, S]`` in [-1, 1] (clamped here; the encoder resizes).
        sentence: ``[N, D]`` sentence features.
    """
    codes = image_encoder(images.float().clamp(-1, 1))[1].float()
    return F.cosine_similarity(codes, sentence.float().to(codes.device), dim=1, eps=1e-8)


def select_rows(better: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Row ``i`` of ``new`` where ``better[i]``, else of ``old`` (``[N, ...]`` tensors of one shape;
    ``better`` is ``[N]`` bool)."""
    if new.shape != old.shape:
        raise ValueError(f"candidate tensors differ in shape: {tuple(new.shape)} and {tuple(old.shape)}")
    return torch.where(better.to(new.device).view(-1, *([1] * (new.dim() - 1))), new, old)


def merge_candidates(better: torch.Tensor, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Per image, the better of two candidate results (``{"images": [...], "attention": [...],
    "intermediates": {...}}``, tensors ``[N, ...]``): ``new`` where ``better``, else ``old``."""
    return {
        "images": [select_rows(better, n, o) for n, o in zip(new["images"], old["images"], strict=True)],
        "attention": [select_rows(better, n, o) for n, o in zip(new["attention"], old["attention"], strict=True)],
        "intermediates": {k: select_rows(better, new["intermediates"][k], v) for k, v in old["intermediates"].items()},
    }
