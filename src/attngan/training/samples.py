"""A training run's sample grids: fixed captions and noise through the pipeline, every stage, and an
attention sheet, written atomically (never a partial PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..data import TextImageData
from ..files import writing
from ..hub import ModelBundle
from ..text import Vocabulary


def save_sample_grid(bundle: ModelBundle, captions: Sequence[str], device: torch.device, precision: str,
                     folder: Path, step: int) -> None:
    """``folder/step-NNNNNNNN.png`` (every stage's image for each caption, seed = its index) and
    ``...-attention.png`` (the first caption's attention maps) from ``bundle`` in ``precision``."""
    from ..inference.pipeline import AttnGANPipeline
    from ..viz import attention_sheet, sample_grid, save_png

    pipe = AttnGANPipeline(bundle, device=device, precision=precision)
    out = pipe(list(captions), seed=list(range(len(captions))))
    images = {folder / f"step-{step:08d}.png": sample_grid(out.images, list(captions))}
    if out.attention_maps:
        images[folder / f"step-{step:08d}-attention.png"] = attention_sheet(out, 0)
    for path, image in images.items():
        with writing(path):
            save_png(image, path)


def spread_captions(data: TextImageData, vocab: Vocabulary, n: int = 8) -> list[str]:
    """``n`` captions of ``data`` at items spread evenly over it (a run's fixed sample captions)."""
    items = [data[i] for i in range(0, len(data), max(len(data) // n, 1))][:n]
    return [" ".join(vocab.decode(item["tokens"].tolist())) for item in items]
