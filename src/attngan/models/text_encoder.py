"""Text encoder: word embedding -> bidirectional LSTM/GRU (the original ``RNN_ENCODER``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..config import TextEncoderConfig


class TextEncoder(nn.Module):
    """Encodes token ids into word features ``[B, D, T]`` and a sentence feature ``[B, D]``.

    Padding (token id 0) after each caption's length is ignored by packing the sequence,
    so a caption's features do not depend on the other captions in the batch.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        if config.vocab_size < 2:
            raise ValueError("text_encoder.vocab_size is not set (it is 0 until a vocabulary is known)")
        self.config = config
        directions = 2 if config.bidirectional else 1
        self.directions = directions
        self.embedding = nn.Embedding(config.vocab_size, config.word_embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        rnn_cls = nn.LSTM if config.rnn_type == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            config.word_embedding_dim,
            config.hidden_dim // directions,
            config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
        )

    def reset_parameters_original(self) -> None:
        """The original's initialisation of the embedding: U(-0.1, 0.1)."""
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode captions.

        Args:
            tokens: ``[B, T]`` int64 token ids, zero-padded after each caption.
            lengths: ``[B]`` number of real tokens per caption (any order, any device).
        Returns:
            ``(word_features [B, D, T], sentence_features [B, D])``; word features at
            padded positions are zero.

        Twins (same results without packing, each bound by a parity test):
        :func:`~attngan.inference.fast.encode_text` (inference, equal lengths;
        ``tests/test_fast.py::test_encode_text_without_packing_matches``) and
        :class:`~attngan.inference.onnx.ExportableTextEncoder` (ONNX export;
        ``tests/test_onnx.py::test_exportable_text_encoder_equals_packed``).
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [B, T], got shape {tuple(tokens.shape)}")
        lengths_cpu = lengths.detach().to("cpu", torch.int64)
        if int(lengths_cpu.min()) < 1:
            raise ValueError("every caption needs at least one token (a length of 0 was given)")
        total = tokens.shape[1]
        embedded = self.dropout(self.embedding(tokens))
        packed = pack_padded_sequence(embedded, lengths_cpu, batch_first=True, enforce_sorted=False)
        output, hidden = self.rnn(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=total)
        if isinstance(hidden, tuple):  # LSTM: (h_n, c_n)
            hidden = hidden[0]
        batch = tokens.shape[0]
        last = hidden.view(self.config.num_layers, self.directions, batch, -1)[-1]  # [dirs, B, H]
        sentence = last.transpose(0, 1).reshape(batch, -1)
        return output.transpose(1, 2), sentence
