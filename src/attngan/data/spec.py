"""Which data a run or an evaluation reads: one frozen description, the ``data:`` section of a
training preset and the data options of ``attngan evaluate`` alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from .shapes_counterfactuals import COUNTERFACTUAL_KINDS, DEFAULT_KIND_WEIGHTS

DATA_KINDS = ("shapes", "cub", "coco", "coco-json", "folder", "tags")
PROCEDURAL = ("shapes",)  # no root folder
MISSING_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class DataSpec:
    """A data set and how to read it.

    Attributes:
        kind: one of ``DATA_KINDS``.
        root: the data folder (None for the procedural ``shapes``).
        split: the split read; None: the reader's default (training: ``train``, evaluation:
            ``test``).
        captions_per_image: None: the data set's default.
        num_workers: data-loading worker processes.
        cache_dir: folder of the decoded-image cache (None: no disk cache).
        skip_bad: skip unreadable images (counted and logged) instead of stopping.
        missing: ``error`` or ``skip`` for images a listing names that are not on disk
            (CUB / COCO partial downloads).
        extra: format-specific arguments of the data set class (e.g. the shapes ``size``).
        counterfactuals: hard-negative captions per training caption (0: none), for the losses
            that use them (:mod:`attngan.data.counterfactual`); evaluation never reads them.
        counterfactual_words: word classes whose words replace each other in counterfactuals of
            data sets other than shapes (colour words are built in), e.g.
            ``{"part": ["wings", "crown", "belly"]}``.
        counterfactual_kinds: shapes only: weights of the kinds of change a counterfactual makes
            (:data:`~attngan.data.shapes_counterfactuals.COUNTERFACTUAL_KINDS`), each replacing
            that kind's default weight, e.g. ``{"swap": 2}`` adds exchanged places to the default mix.
        rounded_negatives: shapes only: each training image also drawn with its silhouettes
            smoothed by a Gaussian of this fraction of each object's radius, a hard-negative image
            of its caption for the DAMSM losses (``train-damsm``) and, paired with its caption, a
            mismatched pair for the last discriminator (``train``) (:mod:`attngan.data.shapes_rounded`;
            0.2 turns a star into a pentagon); 0: off.
    """

    kind: str = "shapes"
    root: str | None = None
    split: str | None = None
    captions_per_image: int | None = None
    num_workers: int = 0
    cache_dir: str | None = None
    skip_bad: bool = False
    missing: str = "error"
    extra: dict[str, Any] = field(default_factory=dict)
    counterfactuals: int = 0
    counterfactual_words: dict[str, list[str]] = field(default_factory=dict)
    counterfactual_kinds: dict[str, float] = field(default_factory=dict)
    rounded_negatives: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ConfigError(f"unknown data set {self.kind!r}; choose one of {', '.join(DATA_KINDS)}", "data.kind")
        if self.kind in PROCEDURAL and self.root is not None:
            raise ConfigError(f"the {self.kind} data set is procedural and takes no root folder", "data.root")
        if self.kind not in PROCEDURAL and not self.root:
            raise ConfigError(f"the {self.kind} data set needs its root folder", "data.root")
        if self.missing not in MISSING_POLICIES:
            raise ConfigError(f"must be one of {', '.join(MISSING_POLICIES)}, not {self.missing!r}", "data.missing")
        if self.num_workers < 0:
            raise ConfigError(f"must be >= 0, got {self.num_workers}", "data.num_workers")
        if self.captions_per_image is not None and self.captions_per_image < 1:
            raise ConfigError(f"must be >= 1, got {self.captions_per_image}", "data.captions_per_image")
        if self.counterfactuals < 0:
            raise ConfigError(f"must be >= 0, got {self.counterfactuals}", "data.counterfactuals")
        if not isinstance(self.counterfactual_words, dict) or not all(
                isinstance(v, list) and all(isinstance(w, str) for w in v) for v in self.counterfactual_words.values()):
            raise ConfigError("expected a mapping of class name -> list of words", "data.counterfactual_words")
        self._check_counterfactual_kinds()
        if isinstance(self.rounded_negatives, bool) or not isinstance(self.rounded_negatives, int | float) \
                or not 0 <= self.rounded_negatives <= 1:
            raise ConfigError(f"must be a number in [0, 1], got {self.rounded_negatives!r}", "data.rounded_negatives")
        if self.rounded_negatives and self.kind != "shapes":
            raise ConfigError(f"only the shapes data set draws rounded negatives, not {self.kind}",
                              "data.rounded_negatives")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"expected a mapping, got {type(self.extra).__name__}", "data.extra")

    def _check_counterfactual_kinds(self) -> None:
        kinds = self.counterfactual_kinds
        if not kinds:
            return
        if not isinstance(kinds, dict):
            raise ConfigError(f"expected a mapping of kind -> weight, got {type(kinds).__name__}",
                              "data.counterfactual_kinds")
        if self.kind != "shapes":
            raise ConfigError(f"only the shapes data set has kinds of counterfactual; {self.kind} swaps words "
                              "(data.counterfactual_words). Moving the shapes preset to other data? add "
                              "--set 'data.counterfactual_kinds={}'", "data.counterfactual_kinds")
        for name, weight in kinds.items():
            if name not in COUNTERFACTUAL_KINDS:
                raise ConfigError(f"unknown kind {name!r}; choose among {', '.join(COUNTERFACTUAL_KINDS)}",
                                  "data.counterfactual_kinds")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
                raise ConfigError(f"the weight of {name!r} must be a number >= 0, got {weight!r}",
                                  "data.counterfactual_kinds")
        if not any(w > 0 for w in self.shapes_counterfactual_weights.values()):
            raise ConfigError("every kind has weight 0: no counterfactual could be drawn", "data.counterfactual_kinds")

    @property
    def shapes_counterfactual_weights(self) -> dict[str, float]:
        """The shapes counterfactuals' weight per kind: the defaults, with ``counterfactual_kinds``'s in place."""
        return {**DEFAULT_KIND_WEIGHTS, **self.counterfactual_kinds}

    def split_or(self, default: str) -> str:
        """The split to read: :attr:`split`, or ``default`` when it is None."""
        return self.split if self.split is not None else default

    def describe(self, image_size: int | None = None, split: str | None = None) -> dict[str, Any]:
        """JSON-ready description for records and cache keys: ``name``, ``split``, the resolved
        ``root`` and every setting that changes which images and captions are read (those at
        their default are left out, so a description is stable as settings are added)."""
        out: dict[str, Any] = {"name": self.kind, "split": split or self.split_or("test")}
        if self.root is not None:
            out["root"] = str(Path(self.root).expanduser().resolve())
        if image_size is not None:
            out["image_size"] = image_size
        if self.captions_per_image is not None:
            out["captions_per_image"] = self.captions_per_image
        if self.missing != "error":
            out["missing"] = self.missing
        if self.skip_bad:
            out["skip_bad"] = True
        if self.extra:
            out["extra"] = dict(sorted(self.extra.items()))
        return out
