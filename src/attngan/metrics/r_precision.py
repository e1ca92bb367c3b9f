"""AttnGAN's R-precision (paper section 5, R = 1): the pieces the ``r_precision`` metric
(:mod:`attngan.metrics.builtin.retrieval`) is made of.

For each generated image, its ground-truth caption and ``num_distractors`` (99) captions of
other classes are encoded by the DAMSM text encoder; the image by the DAMSM image encoder
(global code). A hit is counted when the true caption has the highest cosine similarity to
the image code. Ties count as hits, as the reference counts them (DM-GAN's evaluation takes
``argmax`` over [true, distractors], which returns the first, true, caption on a tie); they
only occur for degenerate (e.g. constant) features, which therefore score 1.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .protocol import DISTRACTOR_STREAM, FOLD_STREAM, shuffled_folds, stream_seed

logger = logging.getLogger(__name__)


def r_precision_from_features(image_codes: torch.Tensor, true_sentence: torch.Tensor,
                              distractor_sentences: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Top-1 retrieval hits of the true caption among distractors.

    Args:
        image_codes: ``[N, D]`` global image codes.
        true_sentence: ``[N, D]`` sentence features of each image's own caption.
        distractor_sentences: ``[N, M, D]`` sentence features of M mismatched captions per image.
    Returns:
        ``[N]`` bool: True where no distractor's cosine similarity beats the true caption's.
    """
    if image_codes.dim() != 2 or true_sentence.shape != image_codes.shape:
        raise ValueError(f"image_codes and true_sentence must both be [N, D], got "
                         f"{tuple(image_codes.shape)} and {tuple(true_sentence.shape)}")
    n, d = image_codes.shape
    if distractor_sentences.dim() != 3 or distractor_sentences.shape[0] != n or distractor_sentences.shape[2] != d:
        raise ValueError(f"distractor_sentences must be [{n}, M, {d}], got {tuple(distractor_sentences.shape)}")
    img = image_codes.double()
    img_norm = img.norm(dim=1)  # [N]
    true = true_sentence.double().to(img.device)
    distract = distractor_sentences.double().to(img.device)
    true_score = (img * true).sum(1) / (img_norm * true.norm(dim=1)).clamp(min=eps)  # [N]
    distract_score = torch.einsum("nd,nmd->nm", img, distract) / (img_norm[:, None] * distract.norm(dim=2)).clamp(min=eps)
    if distract_score.shape[1] == 0:
        return torch.ones(n, dtype=torch.bool, device=img.device)
    return true_score >= distract_score.max(dim=1).values


class CaptionPool:
    """Captions to draw mismatched distractors from: ``tokens [M, T]``, ``lengths [M]``, ``class_ids [M]``
    and, optionally, ``texts`` (M captions as text, for text encoders with their own tokenizer).

    Data sets without classes can pass a unique id per image as the class id, so that only
    an image's own captions are excluded.
    """

    def __init__(self, tokens: torch.Tensor, lengths: torch.Tensor, class_ids: torch.Tensor | np.ndarray,
                 texts: Sequence[str] | None = None) -> None:
        if tokens.dim() != 2 or lengths.shape != (tokens.shape[0],):
            raise ValueError(f"tokens must be [M, T] and lengths [M], got {tuple(tokens.shape)} and {tuple(lengths.shape)}")
        self.tokens = tokens.to(torch.int64)
        self.lengths = lengths.to(torch.int64)
        self.class_ids = np.asarray(class_ids.cpu() if isinstance(class_ids, torch.Tensor) else class_ids).reshape(-1)
        if self.class_ids.shape[0] != tokens.shape[0]:
            raise ValueError(f"class_ids must have {tokens.shape[0]} entries, got {self.class_ids.shape[0]}")
        if texts is not None and len(texts) != tokens.shape[0]:
            raise ValueError(f"texts must have {tokens.shape[0]} entries, got {len(texts)}")
        self.texts = list(texts) if texts is not None else None

    @classmethod
    def from_captions(cls, captions: Sequence[Sequence[int]], class_ids: Sequence[int], max_words: int,
                      texts: Sequence[str] | None = None) -> CaptionPool:
        """A pool from token-id lists (one per caption, cut to ``max_words``), their class ids and,
        optionally, the captions as text."""
        if len(captions) != len(class_ids):
            raise ValueError(f"{len(captions)} captions but {len(class_ids)} class ids")
        if any(len(c) == 0 for c in captions):
            raise ValueError("every caption needs at least one token")
        tokens = np.zeros((len(captions), max_words), dtype=np.int64)
        lengths = np.zeros(len(captions), dtype=np.int64)
        for i, ids in enumerate(captions):
            ids = list(ids)[:max_words]
            tokens[i, :len(ids)] = ids
            lengths[i] = len(ids)
        return cls(torch.from_numpy(tokens), torch.from_numpy(lengths), np.asarray(class_ids), texts)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def mismatched_indices(self, class_id: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """Pool indices ``[count]`` of captions of classes other than ``class_id``, drawn without
        replacement when the pool has enough of them."""
        candidates = np.flatnonzero(self.class_ids != class_id)
        if candidates.size == 0:
            raise ValueError(f"the caption pool has no caption outside class {class_id}")
        return rng.choice(candidates, size=count, replace=candidates.size < count)

    def sample_mismatched(self, class_id: int, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` captions of classes other than ``class_id`` (:meth:`mismatched_indices`):
        ``(tokens [count, T], lengths [count])``."""
        index = torch.from_numpy(self.mismatched_indices(class_id, count, rng))
        return self.tokens[index], self.lengths[index]


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode for the block, restoring their previous mode after."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def summarise_hits(name: str, hits: torch.Tensor, real_hits: torch.Tensor, num_folds: int, seed: int,
                   num_distractors: int) -> dict[str, Any]:
    """The figures and protocol entries of an R-precision record from its hits ``[N]`` and those of
    the real images ``[R]``: values ``name``, ``name_std``, ``real_name``, ``real_name_std`` (mean and
    std of the fold means of :func:`~attngan.metrics.protocol.shuffled_folds` over ``num_folds``
    folds, seed ``[seed, 2]``), ``num_samples``, ``num_distractors``, ``num_folds``, ``fold_seed``,
    ``distractor_seeds`` and ``ties``."""
    folds, fold_seed = min(num_folds, hits.numel()), stream_seed(seed, FOLD_STREAM)
    mean, std = shuffled_folds(hits, folds, fold_seed)
    real_mean, real_std = shuffled_folds(real_hits, min(folds, real_hits.numel()), fold_seed)
    return {"values": {name: mean, f"{name}_std": std, f"real_{name}": real_mean, f"real_{name}_std": real_std},
            "num_samples": int(hits.numel()), "num_distractors": num_distractors, "num_folds": folds,
            "fold_seed": fold_seed, "distractor_seeds": f"[{seed}, {DISTRACTOR_STREAM}, sample index]", "ties": "hit"}


def hits_row(title: str, name: str, record: Mapping[str, Any]) -> tuple[str, str, str]:
    """The table row of an R-precision record (:func:`summarise_hits`): ``title (K folds)``, mean ± std
    of the generated and of the real images."""
    v = record["values"]
    return (f"{title} ({record['extra']['num_folds']} folds)", f"{v[name]:.4f} ± {v[f'{name}_std']:.4f}",
            f"{v[f'real_{name}']:.4f} ± {v[f'real_{name}_std']:.4f}")
