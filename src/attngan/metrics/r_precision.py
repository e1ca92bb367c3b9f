"""AttnGAN's R-precision (paper section 5, R = 1).

For each generated image, its ground-truth caption and ``num_distractors`` (99) captions of
other classes are encoded by the DAMSM text encoder; the image by the DAMSM image encoder
(global code). A hit is counted when the true caption has the highest cosine similarity to
the image code. Hits are cut into ``num_folds`` (10) contiguous folds; the result is the
mean and std of the per-fold precision.

Ties (a distractor scoring exactly as high as the true caption) count as misses. The
original's ``argmax`` would count them as hits, which only differs for degenerate
(e.g. constant) features, where it reports a perfect score.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


def r_precision_from_features(image_codes: torch.Tensor, true_sentence: torch.Tensor,
                              distractor_sentences: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Top-1 retrieval hits of the true caption among distractors.

    Args:
        image_codes: ``[N, D]`` global image codes.
        true_sentence: ``[N, D]`` sentence features of each image's own caption.
        distractor_sentences: ``[N, M, D]`` sentence features of M mismatched captions per image.
    Returns:
        ``[N]`` bool: True where the true caption's cosine similarity beats every distractor's.
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
    return true_score > distract_score.max(dim=1).values


def fold_summary(values: torch.Tensor | np.ndarray, num_folds: int = 10) -> tuple[float, float]:
    """Mean and (population) std of per-fold means of ``values [N]``, folds contiguous and near-equal."""
    v = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be [N], got shape {v.shape}")
    if not 1 <= num_folds <= v.shape[0]:
        raise ValueError(f"num_folds must be between 1 and the number of samples ({v.shape[0]}), got {num_folds}")
    means = [float(part.mean()) for part in np.array_split(v, num_folds)]
    return float(np.mean(means)), float(np.std(means))


class CaptionPool:
    """Captions to draw mismatched distractors from: ``tokens [M, T]``, ``lengths [M]``, ``class_ids [M]``.

    Data sets without classes can pass a unique id per image as the class id, so that only
    an image's own captions are excluded.
    """

    def __init__(self, tokens: torch.Tensor, lengths: torch.Tensor, class_ids: torch.Tensor | np.ndarray) -> None:
        if tokens.dim() != 2 or lengths.shape != (tokens.shape[0],):
            raise ValueError(f"tokens must be [M, T] and lengths [M], got {tuple(tokens.shape)} and {tuple(lengths.shape)}")
        self.tokens = tokens.to(torch.int64)
        self.lengths = lengths.to(torch.int64)
        self.class_ids = np.asarray(class_ids.cpu() if isinstance(class_ids, torch.Tensor) else class_ids).reshape(-1)
        if self.class_ids.shape[0] != tokens.shape[0]:
            raise ValueError(f"class_ids must have {tokens.shape[0]} entries, got {self.class_ids.shape[0]}")

    @classmethod
    def from_captions(cls, captions: Sequence[Sequence[int]], class_ids: Sequence[int], max_words: int) -> CaptionPool:
        """A pool from token-id lists (one per caption, cut to ``max_words``) and their class ids."""
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
        return cls(torch.from_numpy(tokens), torch.from_numpy(lengths), np.asarray(class_ids))

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def sample_mismatched(self, class_id: int, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` captions of classes other than ``class_id``: ``(tokens [count, T], lengths [count])``.

        Drawn without replacement when the pool has enough mismatched captions.
        """
        candidates = np.flatnonzero(self.class_ids != class_id)
        if candidates.size == 0:
            raise ValueError(f"the caption pool has no caption outside class {class_id}")
        picked = rng.choice(candidates, size=count, replace=candidates.size < count)
        index = torch.from_numpy(picked)
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


def _device_of(module: nn.Module) -> torch.device:
    return next(iter(module.parameters()), torch.empty(0)).device


@torch.no_grad()
def r_precision_hits(
    image_encoder: nn.Module,
    text_encoder: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    captions: CaptionPool,
    num_distractors: int = 99,
    seed: int = 0,
    max_samples: int | None = None,
) -> torch.Tensor:
    """Hits ``[N]`` bool over generated batches, with the DAMSM encoders.

    Args:
        image_encoder: ``images [B, 3, H, W] -> (regions, global [B, D])``.
        text_encoder: ``(tokens [B, T], lengths [B]) -> (words, sentence [B, D])``.
        batches: mappings with ``images`` ``[B, 3, H, W]`` in [-1, 1] (the final stage),
            ``tokens`` ``[B, T]``, ``lengths`` ``[B]`` and ``class_ids`` ``[B]`` of the
            captions the images were generated from.
        captions: the pool distractors are drawn from (the test captions).
        seed: seeds the distractor draw.
    """
    rng = np.random.default_rng(seed)
    image_device, text_device = _device_of(image_encoder), _device_of(text_encoder)
    hits: list[torch.Tensor] = []
    done = 0
    with eval_mode(image_encoder, text_encoder):
        for batch in batches:
            images, tokens, lengths = batch["images"], batch["tokens"], batch["lengths"]
            class_ids = torch.as_tensor(batch["class_ids"]).reshape(-1).tolist()
            if max_samples is not None:
                keep = max_samples - done
                if keep <= 0:
                    break
                images, tokens, lengths, class_ids = images[:keep], tokens[:keep], lengths[:keep], class_ids[:keep]
            b = images.shape[0]
            _, codes = image_encoder(images.to(image_device))
            _, true_sent = text_encoder(tokens.to(text_device), lengths.to(text_device))
            drawn = [captions.sample_mismatched(int(c), num_distractors, rng) for c in class_ids]
            wrong_tokens = torch.cat([t for t, _ in drawn]).to(text_device)
            wrong_lengths = torch.cat([n for _, n in drawn]).to(text_device)
            if num_distractors > 0:
                _, wrong_sent = text_encoder(wrong_tokens, wrong_lengths)
            else:
                wrong_sent = true_sent.new_zeros(0, true_sent.shape[1])
            wrong_sent = wrong_sent.reshape(b, num_distractors, -1)
            hits.append(r_precision_from_features(codes, true_sent.to(codes.device), wrong_sent.to(codes.device)).cpu())
            done += b
    if not hits:
        raise ValueError("R-precision got no generated images")
    return torch.cat(hits)


def compute_r_precision(
    image_encoder: nn.Module,
    text_encoder: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    captions: CaptionPool,
    num_distractors: int = 99,
    num_folds: int = 10,
    seed: int = 0,
    max_samples: int | None = None,
) -> dict[str, float]:
    """R-precision of generated images: ``{"r_precision", "r_precision_std", "num_samples", ...}``.

    See :func:`r_precision_hits` for the arguments; hits are summarised over ``num_folds`` folds.
    """
    hits = r_precision_hits(image_encoder, text_encoder, batches, captions, num_distractors, seed, max_samples)
    mean, std = fold_summary(hits, num_folds)
    logger.info("R-precision %.4f ± %.4f over %d images", mean, std, hits.numel())
    return {"r_precision": mean, "r_precision_std": std, "num_samples": int(hits.numel()),
            "num_distractors": num_distractors, "num_folds": num_folds}
