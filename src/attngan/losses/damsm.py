"""DAMSM losses (paper eq. 10-13), vectorised over all caption/image pairs of a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def same_class_mask(class_ids: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor | None:
    """``[B, B]`` bool: True where pair (i, j), i != j, shares a class (excluded as negatives)."""
    if class_ids is None:
        return None
    ids = class_ids.to(device)
    mask = ids[:, None] == ids[None, :]
    return mask & ~torch.eye(batch, dtype=torch.bool, device=device)


def _cosine(x1: torch.Tensor, x2: torch.Tensor, dim: int, eps: float = 1e-8) -> torch.Tensor:
    num = (x1 * x2).sum(dim)
    den = (x1.norm(dim=dim) * x2.norm(dim=dim)).clamp(min=eps)
    return num / den


def word_image_similarity(
    region_features: torch.Tensor,
    word_features: torch.Tensor,
    lengths: torch.Tensor,
    gamma1: float,
    gamma2: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-level matching score of every image with every caption (eq. 10).

    Args:
        region_features: ``[B, D, H, W]`` image regions.
        word_features: ``[B, D, T]`` words (zero beyond each length).
        lengths: ``[B]`` caption lengths.
    Returns:
        ``(similarity [B_img, B_cap], attention [B_cap, T, H, W])``: ``log sum_t exp(gamma2 *
        cos(word_t, context_t))`` for every image/caption pair, and each caption's attention
        over its own image's regions.
    """
    b, d, h, w = region_features.shape
    t = word_features.shape[2]
    regions = region_features.reshape(b, d, h * w)
    valid = torch.arange(t, device=word_features.device)[None, :] < lengths.to(word_features.device)[:, None]  # [Bc, T]
    # scores[c, i, n, t] = <region n of image i, word t of caption c>
    scores = torch.einsum("idn,cdt->cint", regions, word_features)
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    scores = torch.softmax(scores, dim=-1)  # over words (eq. 8)
    attention = torch.softmax(scores.transpose(2, 3) * gamma1, dim=-1)  # [Bc, Bi, T, N] over regions (eq. 9)
    context = torch.einsum("idn,citn->citd", regions, attention)  # [Bc, Bi, T, D]
    cos = _cosine(word_features.transpose(1, 2)[:, None], context, dim=-1)  # [Bc, Bi, T]
    row = torch.exp(cos * gamma2) * valid[:, None, :]
    similarity = torch.log(row.sum(-1)).transpose(0, 1)  # [Bi, Bc]
    own = attention[torch.arange(b), torch.arange(b)].reshape(b, t, h, w)
    return similarity, own


def words_loss(
    region_features: torch.Tensor,
    word_features: torch.Tensor,
    lengths: torch.Tensor,
    class_ids: torch.Tensor | None,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DAMSM word loss: ``(loss image->caption, loss caption->image, attention [B, T, H, W])``.

    Matching pairs are the diagonal; other pairs of the same class are excluded as negatives.
    """
    b = region_features.shape[0]
    sim, att = word_image_similarity(region_features, word_features, lengths, gamma1, gamma2)
    sim = sim * gamma3
    mask = same_class_mask(class_ids, b, sim.device)
    if mask is not None:
        sim = sim.masked_fill(mask, float("-inf"))
    labels = torch.arange(b, device=sim.device)
    return F.cross_entropy(sim, labels), F.cross_entropy(sim.t(), labels), att


def sentence_loss(
    image_codes: torch.Tensor,
    sentence_features: torch.Tensor,
    class_ids: torch.Tensor | None,
    gamma3: float = 10.0,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DAMSM sentence loss on ``[B, D]`` global image codes and sentence features."""
    b = image_codes.shape[0]
    num = image_codes @ sentence_features.t()
    den = image_codes.norm(dim=1, keepdim=True) * sentence_features.norm(dim=1, keepdim=True).t()
    scores = num / den.clamp(min=eps) * gamma3
    mask = same_class_mask(class_ids, b, scores.device)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    labels = torch.arange(b, device=scores.device)
    return F.cross_entropy(scores, labels), F.cross_entropy(scores.t(), labels)


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``[N, D] x [M, D] -> [N, M]`` cosine similarities."""
    return (a @ b.t()) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True).t()).clamp(min=eps)


def damsm_losses(
    region_features: torch.Tensor,
    image_codes: torch.Tensor,
    word_features: torch.Tensor,
    sentence_features: torch.Tensor,
    lengths: torch.Tensor,
    class_ids: torch.Tensor | None,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
) -> dict[str, torch.Tensor]:
    """The four DAMSM terms of a batch (paper eq. 11 and 13), computed in fp32.

    Args:
        region_features: ``[B, D, H, W]``; image_codes: ``[B, D]``.
        word_features: ``[B, D, T]``; sentence_features: ``[B, D]``; lengths: ``[B]``.
        class_ids: ``[B]`` or None (pairs of one class are not negatives).
    Returns:
        ``{"w0", "w1", "s0", "s1"}``: word loss image->caption and caption->image, sentence
        loss image->caption and caption->image (scalars).
    """
    w0, w1, _ = words_loss(region_features.float(), word_features.float(), lengths, class_ids, gamma1, gamma2, gamma3)
    s0, s1 = sentence_loss(image_codes.float(), sentence_features.float(), class_ids, gamma3)
    return {"w0": w0, "w1": w1, "s0": s0, "s1": s1}
