"""Tokenisation identical to the original AttnGAN, and the vocabulary.

The original lower-cases a caption, takes ``\\w+`` tokens (NLTK's ``RegexpTokenizer``) and
drops non-ASCII characters from each token (dropping tokens that become empty). Token id
0 is ``<end>``, used as padding.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .files import write_atomic

log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")
PAD_TOKEN = "<end>"


def tokenize(caption: str) -> list[str]:
    """``"A Red-bird, très small"`` -> ``["a", "red", "bird", "trs", "small"]``."""
    caption = caption.replace("\ufffd\ufffd", " ")
    tokens = []
    for token in _WORD.findall(caption.lower()):
        token = token.encode("ascii", "ignore").decode("ascii")
        if token:
            tokens.append(token)
    return tokens


class UnknownWordsError(ValueError):
    """No word of a caption is in the vocabulary."""


@dataclass(frozen=True)
class EncodedCaption:
    """One caption as the model sees it."""

    text: str
    tokens: list[str]  # the words used, in order
    ids: list[int]
    dropped: list[str]  # unknown words, not in the vocabulary
    truncated: list[str]  # known words beyond max_words, cut at inference


class Vocabulary:
    """Bidirectional word <-> id map with ``<end>`` (padding) at id 0."""

    def __init__(self, words: Sequence[str]) -> None:
        if not words or words[0] != PAD_TOKEN:
            raise ValueError(f"a vocabulary must start with {PAD_TOKEN!r} at id 0")
        seen: set[str] = set()
        for word in words:
            if word in seen:
                raise ValueError(f"duplicate word in vocabulary: {word!r}")
            seen.add(word)
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    @classmethod
    def build(cls, captions: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        """Vocabulary of all tokens appearing at least ``min_count`` times.

        Words are ordered by first appearance, so the result is deterministic.
        """
        counts: dict[str, int] = {}
        for tokens in captions:
            for t in tokens:
                counts[t] = counts.get(t, 0) + 1
        return cls([PAD_TOKEN] + [w for w, n in counts.items() if n >= min_count and w != PAD_TOKEN])

    @classmethod
    def from_index_to_word(cls, ixtoword: dict[int, str]) -> Vocabulary:
        """From the original's ``ixtoword`` dict (ids must be 0..N-1, 0 being ``<end>``)."""
        n = len(ixtoword)
        if sorted(ixtoword) != list(range(n)):
            raise ValueError("ixtoword ids are not contiguous from 0")
        return cls([ixtoword[i] for i in range(n)])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``{"words": [...]}`` as JSON (atomically)."""
        write_atomic(path, json.dumps({"words": self.words}, ensure_ascii=True).encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"vocabulary not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read vocabulary {path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("words"), list):
            raise ValueError(f"vocabulary {path}: expected an object with a 'words' list")
        if not all(isinstance(w, str) for w in data["words"]):
            raise ValueError(f"vocabulary {path}: every word must be a string")
        try:
            return cls(data["words"])
        except ValueError as exc:
            raise ValueError(f"vocabulary {path}: {exc}") from None

    def encode_tokens(self, tokens: Sequence[str]) -> tuple[list[int], list[str]]:
        """Known ids and the unknown words (in order)."""
        ids, dropped = [], []
        for t in tokens:
            i = self.index.get(t)
            if i is None or i == 0:
                dropped.append(t)
            else:
                ids.append(i)
        return ids, dropped

    def encode(self, caption: str, max_words: int | None = None) -> EncodedCaption:
        """Tokenise and map a caption; unknown words are reported, never silently dropped.

        At inference a caption longer than ``max_words`` keeps its first ``max_words``
        known words (deterministic); the rest are reported in ``truncated``.

        Raises:
            UnknownWordsError: the caption has no known word.
        """
        tokens = tokenize(caption)
        ids, dropped = self.encode_tokens(tokens)
        if not ids:
            shown = ", ".join(repr(t) for t in tokens[:10]) or "no words at all"
            raise UnknownWordsError(f"caption {caption[:80]!r} has no word in the vocabulary ({shown})")
        used = [t for t in tokens if self.index.get(t, 0) != 0]
        truncated: list[str] = []
        if max_words is not None and len(ids) > max_words:
            truncated = used[max_words:]
            ids, used = ids[:max_words], used[:max_words]
        return EncodedCaption(caption, used, ids, dropped, truncated)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids if i != 0]


def spread_positions(n: int, count: int, passes: int = 8) -> Iterator[int]:
    """Positions in ``range(n)`` to look for ``count`` examples at: ``count`` of them spread
    evenly over the range first, then, pass after pass, those between them (``count * passes``
    in all, repeating when ``n`` is smaller)."""
    slots = count * passes
    for offset in range(passes if n > 0 else 0):
        for k in range(count):
            yield (k * passes + offset) * n // slots


def pick_example_captions(candidates: Iterable[str], vocab: Vocabulary, count: int = 6,
                          max_words: int | None = None) -> list[str]:
    """Up to ``count`` distinct captions of ``candidates`` (in their order) that the model reads
    whole: every word in ``vocab`` and at most ``max_words`` words. Captions are kept as written
    (trimmed, whitespace collapsed)."""
    chosen: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for text in candidates:
        if len(chosen) >= count:
            break
        tokens = tuple(tokenize(text))
        if not tokens or tokens in seen or (max_words is not None and len(tokens) > max_words):
            continue
        if all(vocab.index.get(t, 0) != 0 for t in tokens):
            seen.add(tokens)
            chosen.append(" ".join(text.split()))
    return chosen


def subsample_ids(ids: Sequence[int], max_words: int, rng: np.random.Generator) -> list[int]:
    """Training-time treatment of long captions, as the original: keep a random ordered subset."""
    if len(ids) <= max_words:
        return list(ids)
    keep = np.sort(rng.permutation(len(ids))[:max_words])
    return [ids[i] for i in keep]


def pad_batch(batch: Sequence[Sequence[int]], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad id lists: returns ``(tokens [B, T] int64, lengths [B] int64)``."""
    lengths = torch.tensor([len(x) for x in batch], dtype=torch.int64)
    width = int(lengths.max()) if length is None else length
    tokens = torch.zeros(len(batch), width, dtype=torch.int64)
    for i, ids in enumerate(batch):
        tokens[i, : len(ids)] = torch.tensor(ids[:width], dtype=torch.int64)
    return tokens, lengths.clamp(max=width)


MAX_UNKNOWN_WORDS = 0.1  # fraction of a data set's words the DAMSM vocabulary may lack


def check_vocabulary_coverage(data: object, vocab_file: Path) -> None:
    """Refuse a data set more than ``MAX_UNKNOWN_WORDS`` of whose words are not in the DAMSM
    vocabulary (its encoders were trained on another data set): such words would be dropped
    from every caption. Fewer unknown words are a warning."""
    unknown: dict[str, int] = getattr(data, "unknown_words", None) or {}
    total = int(getattr(data, "num_words", 0))
    if not unknown or not total:
        return
    fraction = sum(unknown.values()) / total
    shown = ", ".join(sorted(unknown, key=lambda w: -unknown[w])[:8])
    message = f"{fraction:.0%} of the data set's words are not in {vocab_file} (most frequent: {shown})"
    if fraction > MAX_UNKNOWN_WORDS:
        raise ValueError(f"vocabulary mismatch: {message}; were the DAMSM encoders trained on another data set?")
    log.warning("%s; they are dropped from the captions", message)
