"""The captions of a batch and their counterfactuals (hard negatives), through the text encoder
in one pass (one forward per backward, as DistributedDataParallel requires)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..losses.damsm import HardNegatives
from .loop import pad_to

TextEncoderFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def encode_captions(text_encoder: TextEncoderFn, batch: Mapping[str, Any], max_words: int, device: torch.device,
                    with_negatives: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor, HardNegatives | None]:
    """``(words [B, D, T], sentence [B, D], negatives or None)`` of a batch (T = ``max_words``).

    The batch's ``negatives`` (``[B, K, T']`` token ids) and ``negative_lengths`` (``[B, K]``, 0 for
    an empty slot, encoded as one padding token and masked by the losses) go through the encoder
    with the captions when present and ``with_negatives``.
    """
    tokens = pad_to(batch["tokens"], max_words, 1)
    lengths = batch["lengths"]
    if not with_negatives or "negatives" not in batch:
        words, sentence = text_encoder(tokens.to(device), lengths)
        return words, sentence, None
    negatives, negative_lengths = batch["negatives"], batch["negative_lengths"]
    b, k = negative_lengths.shape
    all_tokens = torch.cat((tokens, pad_to(negatives.reshape(b * k, -1), max_words, 1)[:, :max_words]))
    all_lengths = torch.cat((lengths, negative_lengths.reshape(b * k).clamp(min=1)))
    words, sentence = text_encoder(all_tokens.to(device), all_lengths)
    hard = HardNegatives(words[b:].reshape(b, k, *words.shape[1:]), sentence[b:].reshape(b, k, -1),
                         negative_lengths.to(device))
    return words[:b], sentence[:b], hard
