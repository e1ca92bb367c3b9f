"""What a training run checks of its data before anything trains (``attngan train --data-root``):
enough captioned images for a batch, every image captioned, every image file readable, and words
seen often enough to be learnt -- one report naming every problem at once, instead of an error at
the first one (or ten minutes in).

Problems stop the run; warnings are printed with the report. The data set is read as training
reads it, but with ``skip_bad`` on, so that every bad file is found and counted; image files are
checked by their headers only (decoding every image would take as long as an epoch): a file
that is truncated after a valid header is still met during training, where ``data.skip_bad``
decides what happens.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from .common import DataError
from .registry import build_from_options
from .spec import DataSpec

logger = logging.getLogger(__name__)

FEW_IMAGES = 500  # fewer training images than this: a warning (a GAN learns little beyond them)
SHOWN = 5  # files or words named per finding
# skip reasons of the data sets -> what they mean, and how to fix it
SKIP_REASONS = {
    "missing_captions": ("caption file(s) are missing (name.txt beside name.jpg, one caption a line)",
                         "write them"),
    "bad_caption_line": ("caption line(s) are empty or have no ASCII word", "fix or delete those lines"),
    "empty_image": ("image file(s) are empty (0 bytes)", "replace or delete them"),
    "bad_caption": ("caption(s) have no word of the vocabulary", "rephrase them"),
    "too_few_captions": ("image(s) have too few usable captions", "add captions"),
    "unreadable_image": ("image file(s) cannot be read", "replace or delete them"),
}


@dataclass(frozen=True)
class DataReport:
    """What :func:`check_training_data` found: counts, ``problems`` (the run must not start) and
    ``warnings``."""

    where: str
    train_images: int = 0
    test_images: int = 0
    captions: int = 0
    vocabulary: int = 0
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """The report as printed: a summary line, then one line per problem and per warning."""
        head = (f"data {self.where}: {self.train_images:,} captioned training images ({self.captions:,} captions, "
                f"{self.vocabulary:,} words), {self.test_images:,} held out as the test split")
        return [head, *(f"problem: {p}" for p in self.problems), *(f"warning: {w}" for w in self.warnings)]


def _first(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (", ..." if len(items) > SHOWN else "")


def _image_findings(records: list[Any], image_size: int) -> tuple[list[str], list[str]]:
    """``(unreadable, small)``: image files whose header cannot be read, and those smaller than
    ``image_size`` on their short side (enlarged for training)."""
    unreadable, small = [], []
    for record in records:
        path = getattr(record, "image", None)
        if path is None:
            continue
        try:
            with Image.open(path) as image:
                if min(image.size) < image_size:
                    small.append(Path(path).name)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            unreadable.append(f"{path} ({type(exc).__name__})")
    return unreadable, small


def _word_findings(dataset: Any, min_word_count: int, max_words: int) -> tuple[list[str], int, int]:
    """``(warnings, captions, vocabulary)`` of the training captions: rare words, long captions."""
    counts: Counter[int] = Counter()
    captions = long = 0
    for record in getattr(dataset, "records", []):
        for ids in record.captions:
            counts.update(ids)
            captions += 1
            long += len(ids) > max_words
    warnings: list[str] = []
    total = sum(counts.values())
    rare = sorted((w for w, c in counts.items() if c < min_word_count), key=lambda w: (counts[w], w))
    if rare and total:
        share = sum(counts[w] for w in rare) / total
        named = [f"{dataset.vocab.words[w]} ({counts[w]})" for w in rare]
        warnings.append(f"{len(rare):,} of the {len(counts):,} words of the training captions occur fewer than "
                        f"{min_word_count} times ({share:.1%} of the words written): {_first(named)}; the encoders "
                        "learn next to nothing of them -- say the same with common words, or add captions using them")
    if long:
        warnings.append(f"{long:,} of {captions:,} captions are longer than {max_words} words: training reads "
                        f"{max_words} of their words at a time (as the original)")
    return warnings, captions, len(counts)


def check_training_data(spec: DataSpec, image_size: int, max_words: int, min_images: int,
                        min_word_count: int = 3) -> DataReport:
    """Check the ``train`` split of ``spec`` (see the module doc) for a run needing ``min_images``
    images a batch, at ``image_size`` px, reading ``max_words`` words of a caption."""
    where = f"{spec.root} ({spec.kind})" if spec.root else spec.kind
    lenient = replace(spec, skip_bad=True)
    try:
        dataset = build_from_options(lenient, (image_size,), max_words, split="train", train=False)
    except (DataError, FileNotFoundError, ValueError) as exc:
        return DataReport(where, problems=(str(exc),))
    try:
        test = len(build_from_options(lenient, (image_size,), max_words, split="test", train=False))
    except (DataError, FileNotFoundError, ValueError):
        test = 0
    problems: list[str] = []
    warnings: list[str] = []
    skipped: dict[str, list[str]] = dict(getattr(dataset, "skipped", {}))
    records = list(getattr(dataset, "records", []))
    unreadable, small = _image_findings(records, image_size)
    if unreadable:
        skipped.setdefault("unreadable_image", []).extend(unreadable)
    for reason, found in sorted(skipped.items()):
        what, fix = SKIP_REASONS.get(reason, (f"item(s) skipped ({reason})", "fix them"))
        finding = f"{len(found):,} {what}: {_first(found)}"
        if spec.skip_bad:
            warnings.append(f"{finding}; skipped (data.skip_bad)")
        else:
            problems.append(f"{finding}; {fix}, or pass --set data.skip_bad=true to train without them")
    missing = list(getattr(dataset, "missing", []))
    if missing:
        warnings.append(f"{len(missing):,} listed image(s) are not on disk and are left out: {_first(missing)}")
    usable = len(records) - (len(unreadable) if spec.skip_bad else 0) if records else len(dataset)
    if usable < min_images:
        problems.append(f"{usable:,} captioned training image(s); one batch of this run needs {min_images} "
                        f"(run.batch_size): add images, or pass --set run.batch_size=N with 2 <= N <= {usable}")
    elif usable < FEW_IMAGES:
        warnings.append(f"only {usable:,} training images: a GAN learns little beyond images it has seen "
                        f"(thousands are usual)")
    if small:
        warnings.append(f"{len(small):,} image(s) are smaller than {image_size} px on their short side and are "
                        f"enlarged: {_first(small)}")
    word_warnings, captions, vocabulary = _word_findings(dataset, min_word_count, max_words)
    warnings += word_warnings
    report = DataReport(where, usable, test, captions, vocabulary, tuple(problems), tuple(warnings))
    logger.info("%s", "; ".join(report.lines()))
    return report
