"""Word attention of the generator (paper eq. 2). The DAMSM losses attend from words to image
regions in :mod:`attngan.losses.damsm` (eq. 7-9)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv1x1


def tile_mask_like_original(mask: torch.Tensor, num_queries: int) -> torch.Tensor:
    """Reproduce the original's ``mask.repeat(queryL, 1)`` row pairing.

    The original flattens attention to ``[B * queryL, T]`` (sample-major) but tiles the
    mask query-major, so row ``r`` receives the mask of sample ``r % B``.

    Args:
        mask: ``[B, T]`` bool, True at padded words.
        num_queries: number of image positions ``H * W``.
    Returns:
        ``[B, queryL, T]`` bool mask as the original applies it.
    """
    batch = mask.shape[0]
    rows = torch.arange(batch, device=mask.device)[:, None] * num_queries
    rows = rows + torch.arange(num_queries, device=mask.device)[None, :]
    return mask[rows % batch]


def word_attention(
    image_features: torch.Tensor,
    word_features: torch.Tensor,
    mask: torch.Tensor | None = None,
    legacy_mask_tiling: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attend from every image position to the (projected) words.

    Args:
        image_features: ``[B, C, H, W]`` queries.
        word_features: ``[B, C, T]`` words already projected to ``C`` channels.
        mask: ``[B, T]`` bool, True where the word is padding, or None.
        legacy_mask_tiling: apply the mask with the original's row pairing.
    Returns:
        ``(word_context [B, C, H, W], attention [B, T, H, W])``; attention sums to 1 over T.

    Twin: :func:`~attngan.inference.fast.channels_last_word_attention` (channels-last context for
    the fused generator; ``tests/test_fast.py::test_channels_last_word_attention_matches``).
    """
    b, c, h, w = image_features.shape
    queries = image_features.reshape(b, c, h * w).transpose(1, 2)  # [B, HW, C]
    scores = torch.bmm(queries, word_features)  # [B, HW, T]
    if mask is not None:
        if legacy_mask_tiling:
            full = tile_mask_like_original(mask, h * w)
        else:
            full = mask[:, None, :].expand_as(scores)
        scores = scores.masked_fill(full, float("-inf"))
    attention = torch.softmax(scores, dim=-1).transpose(1, 2)  # [B, T, HW]
    context = torch.bmm(word_features, attention)  # [B, C, HW]
    return context.reshape(b, c, h, w), attention.reshape(b, -1, h, w)


class WordAttention(nn.Module):
    """Projects word features ``[B, D, T]`` to the image width ``C`` and attends (eq. 2)."""

    def __init__(self, image_channels: int, text_dim: int) -> None:
        super().__init__()
        self.project_words = conv1x1(text_dim, image_channels)

    def forward(
        self,
        image_features: torch.Tensor,
        word_features: torch.Tensor,
        mask: torch.Tensor | None = None,
        legacy_mask_tiling: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, H, W]``, ``[B, D, T]``, ``[B, T]`` -> ``([B, C, H, W], [B, T, H, W])``."""
        weight = self.project_words.weight[:, :, 0, 0]  # [C, D]
        projected = torch.matmul(weight, word_features)  # [B, C, T]
        return word_attention(image_features, projected, mask, legacy_mask_tiling)
