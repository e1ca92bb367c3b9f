"""DAMSM losses (paper eq. 10-13), vectorised over all caption/image pairs of a batch, with
optional hard negatives: counterfactual captions of each image (:class:`HardNegatives`) that join
the image->caption direction of the word and sentence losses as extra negatives, and a negative
image of each caption (:class:`ImageNegatives`, e.g. its scene with rounded silhouettes) that joins
the caption->image direction."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..config import DAMSMLossConfig

_GAMMAS = DAMSMLossConfig()  # the paper's gamma1 / gamma2 / gamma3: their one home is the config


class HardNegatives(NamedTuple):
    """Counterfactual captions of each image of a batch, encoded (K per image)."""

    words: torch.Tensor  # [B, K, D, T] word features (zero beyond each length)
    sentences: torch.Tensor  # [B, K, D] sentence features
    lengths: torch.Tensor  # [B, K] caption lengths; 0 marks an empty slot (no counterfactual)

    def float(self) -> HardNegatives:
        return HardNegatives(self.words.float(), self.sentences.float(), self.lengths)


class ImageNegatives(NamedTuple):
    """One negative image of each caption of a batch, encoded."""

    regions: torch.Tensor  # [B, D, H, W] region features
    codes: torch.Tensor  # [B, D] global codes
    valid: torch.Tensor  # [B] bool; False marks a caption without one

    def float(self) -> ImageNegatives:
        return ImageNegatives(self.regions.float(), self.codes.float(), self.valid)


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


def paired_word_image_similarity(
    region_features: torch.Tensor,
    word_features: torch.Tensor,
    lengths: torch.Tensor,
    gamma1: float,
    gamma2: float,
) -> torch.Tensor:
    """The word-level score (eq. 10) of image ``m`` with caption ``m`` only: ``[M]``.

    Args:
        region_features: ``[M, D, H, W]``; word_features: ``[M, D, T]``; lengths: ``[M]`` (>= 1).

    The diagonal of :func:`word_image_similarity` computed for M pairs instead of M x M
    (``tests/test_damsm_hard_negatives.py`` binds the two).
    """
    m, d, h, w = region_features.shape
    t = word_features.shape[2]
    regions = region_features.reshape(m, d, h * w)
    valid = torch.arange(t, device=word_features.device)[None, :] < lengths.to(word_features.device)[:, None]
    scores = torch.einsum("mdn,mdt->mnt", regions, word_features)
    scores = torch.softmax(scores.masked_fill(~valid[:, None, :], float("-inf")), dim=-1)  # over words
    attention = torch.softmax(scores.transpose(1, 2) * gamma1, dim=-1)  # [M, T, N] over regions
    context = torch.einsum("mdn,mtn->mtd", regions, attention)
    cos = _cosine(word_features.transpose(1, 2), context, dim=-1)  # [M, T]
    return torch.log((torch.exp(cos * gamma2) * valid).sum(-1))


def _hard_negative_logits(region_features: torch.Tensor, negatives: HardNegatives, gamma1: float, gamma2: float,
                          gamma3: float) -> torch.Tensor:
    """``[B, K]`` scaled word-level scores of each image with its counterfactuals (-inf where empty)."""
    b, k, d, t = negatives.words.shape
    filled = negatives.lengths.to(region_features.device) > 0
    regions = region_features[:, None].expand(-1, k, -1, -1, -1).reshape(b * k, *region_features.shape[1:])
    lengths = negatives.lengths.to(region_features.device).clamp(min=1).reshape(b * k)
    score = paired_word_image_similarity(regions, negatives.words.reshape(b * k, d, t), lengths, gamma1, gamma2)
    return (score.view(b, k) * gamma3).masked_fill(~filled, float("-inf"))


def words_loss(
    region_features: torch.Tensor,
    word_features: torch.Tensor,
    lengths: torch.Tensor,
    class_ids: torch.Tensor | None,
    gamma1: float = _GAMMAS.gamma1,
    gamma2: float = _GAMMAS.gamma2,
    gamma3: float = _GAMMAS.gamma3,
    negatives: HardNegatives | None = None,
    image_negatives: ImageNegatives | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DAMSM word loss: ``(loss image->caption, loss caption->image, attention [B, T, H, W])``.

    Matching pairs are the diagonal; other pairs of the same class are excluded as negatives.
    ``negatives``: each image's counterfactual captions join its row (image->caption) as
    further negatives. ``image_negatives``: each caption's negative image joins its row of the
    caption->image direction.
    """
    b = region_features.shape[0]
    sim, att = word_image_similarity(region_features, word_features, lengths, gamma1, gamma2)
    sim = sim * gamma3
    mask = same_class_mask(class_ids, b, sim.device)
    if mask is not None:
        sim = sim.masked_fill(mask, float("-inf"))
    labels = torch.arange(b, device=sim.device)
    rows = sim
    if negatives is not None:
        rows = torch.cat((sim, _hard_negative_logits(region_features, negatives, gamma1, gamma2, gamma3)), dim=1)
    columns = sim.t()
    if image_negatives is not None:
        score = paired_word_image_similarity(image_negatives.regions, word_features, lengths.clamp(min=1), gamma1,
                                             gamma2)
        extra = (score * gamma3).masked_fill(~image_negatives.valid.to(score.device), float("-inf"))
        columns = torch.cat((columns, extra[:, None]), dim=1)
    return F.cross_entropy(rows, labels), F.cross_entropy(columns, labels), att


def sentence_loss(
    image_codes: torch.Tensor,
    sentence_features: torch.Tensor,
    class_ids: torch.Tensor | None,
    gamma3: float = _GAMMAS.gamma3,
    eps: float = 1e-8,
    negatives: HardNegatives | None = None,
    image_negatives: ImageNegatives | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DAMSM sentence loss on ``[B, D]`` global image codes and sentence features; ``negatives``
    join the image->caption direction and ``image_negatives`` the caption->image direction, as in
    :func:`words_loss`."""
    b = image_codes.shape[0]
    num = image_codes @ sentence_features.t()
    den = image_codes.norm(dim=1, keepdim=True) * sentence_features.norm(dim=1, keepdim=True).t()
    scores = num / den.clamp(min=eps) * gamma3
    mask = same_class_mask(class_ids, b, scores.device)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    labels = torch.arange(b, device=scores.device)
    rows = scores
    if negatives is not None:
        hard = _cosine(image_codes[:, None, :], negatives.sentences, dim=-1, eps=eps) * gamma3  # [B, K]
        hard = hard.masked_fill(negatives.lengths.to(hard.device) == 0, float("-inf"))
        rows = torch.cat((scores, hard), dim=1)
    columns = scores.t()
    if image_negatives is not None:
        extra = _cosine(sentence_features, image_negatives.codes, dim=-1, eps=eps) * gamma3  # [B]
        extra = extra.masked_fill(~image_negatives.valid.to(extra.device), float("-inf"))
        columns = torch.cat((columns, extra[:, None]), dim=1)
    return F.cross_entropy(rows, labels), F.cross_entropy(columns, labels)


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
    gamma1: float = _GAMMAS.gamma1,
    gamma2: float = _GAMMAS.gamma2,
    gamma3: float = _GAMMAS.gamma3,
    negatives: HardNegatives | None = None,
    image_negatives: ImageNegatives | None = None,
) -> dict[str, torch.Tensor]:
    """The four DAMSM terms of a batch (paper eq. 11 and 13), computed in fp32.

    Args:
        region_features: ``[B, D, H, W]``; image_codes: ``[B, D]``.
        word_features: ``[B, D, T]``; sentence_features: ``[B, D]``; lengths: ``[B]``.
        class_ids: ``[B]`` or None (pairs of one class are not negatives).
        negatives: counterfactual captions of each image (image->caption terms), or None.
        image_negatives: a negative image of each caption (caption->image terms), or None.
    Returns:
        ``{"w0", "w1", "s0", "s1"}``: word loss image->caption and caption->image, sentence
        loss image->caption and caption->image (scalars).
    """
    hard = None if negatives is None else negatives.float()
    images = None if image_negatives is None else image_negatives.float()
    w0, w1, _ = words_loss(region_features.float(), word_features.float(), lengths, class_ids, gamma1, gamma2, gamma3,
                           hard, images)
    s0, s1 = sentence_loss(image_codes.float(), sentence_features.float(), class_ids, gamma3, negatives=hard,
                           image_negatives=images)
    return {"w0": w0, "w1": w1, "s0": s0, "s1": s1}
