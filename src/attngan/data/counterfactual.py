"""Counterfactual captions: for a caption, captions that differ from it in exactly one
attribute word, used as *hard negatives* by the DAMSM and GAN losses (NegCLIP, Yuksekgonul et
al., ICLR 2023, cured CLIP's "bag of words" behaviour the same way).

In a random batch, few other captions differ from a caption in one word only, so a word that is
hard to see (a shape, a part's colour) gets a small share of the contrastive signal. A
counterfactual puts exactly that contrast into every batch.

Two sources:

- the shapes data set, from its scenes (:mod:`attngan.data.shapes_counterfactuals`): one
  object's shape, colour, size or position changed, or two objects' attributes exchanged, the
  caption keeping its template and synonyms; every one a true negative;
- any other data set: :class:`WordSwap` replaces one word of a *word class* by another word of
  the same class (colour words are built in, ``COLOR_WORDS``; further classes are given by the
  user, e.g. ``{"part": ["wings", "crown", "belly"]}``), so CUB's "red wings" becomes "blue wings".

:class:`Counterfactuals` wraps a data set and adds them to every item as ``negatives`` (``[K,
T]`` token ids) and ``negative_lengths`` (``[K]``; 0 marks a slot with no counterfactual, which
the losses ignore).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..text import Vocabulary, tokenize
from .common import ItemExtras
from .shapes import ShapesDataset
from .shapes_captions import names_background
from .shapes_counterfactuals import DEFAULT_KIND_WEIGHTS, sample_counterfactuals

COLOR_WORDS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink", "black", "white", "gray",
               "grey", "brown")
log = logging.getLogger(__name__)

COUNTERFACTUAL_STREAM = 7  # random stream of the counterfactuals: [seed, 7, epoch, index]


class WordSwap:
    """Replace one word of a class by another word of that class, on token ids.

    Args:
        vocab: the vocabulary of the ids.
        classes: extra word classes, name -> words (colour words are always a class).
    Words of a class that the vocabulary lacks are ignored; a class with fewer than two known
    words swaps nothing. A word in two classes is swapped within the first.
    """

    def __init__(self, vocab: Vocabulary, classes: Mapping[str, Sequence[str]] | None = None) -> None:
        self.classes: dict[str, list[int]] = {}
        self.class_of: dict[int, str] = {}
        for name, words in {"color": COLOR_WORDS, **dict(classes or {})}.items():
            if isinstance(words, str) or not all(isinstance(w, str) for w in words):
                raise ValueError(f"counterfactual word class {name!r}: expected a list of words")
            ids = []
            for word in words:
                for token in tokenize(word):
                    if token in vocab and vocab.index[token] not in self.class_of:
                        ids.append(vocab.index[token])
            ids = list(dict.fromkeys(ids))
            if len(ids) >= 2:
                self.classes[name] = ids
                for i in ids:
                    self.class_of[i] = name

    def candidates(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        """Every single-word swap of a caption: ``(position, new id)`` pairs."""
        out = []
        for position, token in enumerate(ids):
            name = self.class_of.get(int(token))
            if name is not None:
                out += [(position, other) for other in self.classes[name] if other != token]
        return out

    def sample(self, ids: Sequence[int], count: int, rng: np.random.Generator) -> list[list[int]]:
        """Up to ``count`` distinct counterfactuals of ``ids`` (fewer when the caption has fewer):
        a word position is drawn first (uniform over the swappable words), then its replacement."""
        ids = [int(t) for t in ids]
        positions = [p for p, t in enumerate(ids) if t in self.class_of]
        out: list[list[int]] = []
        seen: set[tuple[int, ...]] = set()
        total = len(self.candidates(ids))
        tries = 0
        while len(out) < min(count, total) and tries < 20 * count:
            tries += 1
            position = positions[int(rng.integers(len(positions)))]
            choices = [t for t in self.classes[self.class_of[ids[position]]] if t != ids[position]]
            new = list(ids)
            new[position] = choices[int(rng.integers(len(choices)))]
            if tuple(new) not in seen:
                seen.add(tuple(new))
                out.append(new)
        return out


class Counterfactuals(ItemExtras):
    """A data set whose items carry ``count`` counterfactual captions of their caption.

    Items gain ``negatives`` (``[count, max_words]`` int64 token ids, zero-padded) and
    ``negative_lengths`` (``[count]`` int64; 0 where the caption has fewer counterfactuals).
    They are a pure function of ``(seed, epoch, index)``. Every other attribute is the wrapped
    data set's.
    """

    def __init__(self, dataset: Any, count: int, word_classes: Mapping[str, Sequence[str]] | None = None,
                 seed: int = 0, shapes_weights: Mapping[str, float] = DEFAULT_KIND_WEIGHTS) -> None:
        if count < 1:
            raise ValueError(f"counterfactuals per caption must be >= 1, got {count}")
        self.dataset, self.count, self.seed = dataset, int(count), int(seed)
        self.max_words = int(dataset.max_words)
        self.own = isinstance(dataset, ShapesDataset)
        self.shapes_weights = dict(shapes_weights)
        self.swap = None if self.own else WordSwap(dataset.vocab, word_classes)
        if self.swap is not None and not self.swap.classes:
            log.warning("counterfactual captions: no word class has two words in the vocabulary, so no caption "
                        "gets one (give data.counterfactual_words, e.g. {part: [wings, crown, belly]})")
        self.epoch = 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        index = index % len(self.dataset)
        rng = np.random.default_rng([self.seed, COUNTERFACTUAL_STREAM, self.epoch, index])
        if self.own:
            caption = int(item["caption_index"])
            own_text = self.dataset.caption_text(index, caption)
            scenes = sample_counterfactuals(self.dataset.scene(index), self.count, rng, self.shapes_weights,
                                            names_background(own_text))
            texts = [self.dataset.caption_with(index, caption, other) for other in scenes]
            captions = [self.dataset.vocab.encode_tokens(tokenize(t))[0][: self.max_words] for t in texts]
        else:
            assert self.swap is not None
            ids = item["tokens"][: int(item["length"])].tolist()
            captions = self.swap.sample(ids, self.count, rng)
        negatives = torch.zeros(self.count, self.max_words, dtype=torch.int64)
        lengths = torch.zeros(self.count, dtype=torch.int64)
        for k, ids in enumerate(captions[: self.count]):
            negatives[k, : len(ids)] = torch.as_tensor(ids, dtype=torch.int64)
            lengths[k] = len(ids)
        return {**item, "negatives": negatives, "negative_lengths": lengths}
