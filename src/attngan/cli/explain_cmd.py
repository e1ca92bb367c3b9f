"""``attngan explain``: what the model makes of a caption and how well its DAMSM encoders think an
image matches it (the values of the server's explainer page), printed and drawn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .generate_cmd import CaptionError
from .group import load_pipeline, main, model_options, pipeline_options

if TYPE_CHECKING:
    import torch

    from ..inference.explain import Explanation


def _read_image(path: str, size: int) -> torch.Tensor:
    """``path`` as ``[3, size, size]`` in [-1, 1]: the centred square, resized."""
    import numpy as np
    import torch
    from PIL import Image

    from ..data.common import DataError, open_rgb

    try:
        image = open_rgb(path)
    except (DataError, FileNotFoundError) as exc:
        raise click.BadParameter(str(exc), param_hint="--image") from None
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0


def _lines(explanation: Explanation, source: str) -> list[str]:
    """The explanation as text: tokens, word and sentence features, conditioning, DAMSM."""
    caption, text = explanation.caption, explanation.text
    lines = [f"caption {caption.text!r}: {len(text.tokens)} word(s) used ({' '.join(text.tokens)})"
             + (f"; dropped (unknown): {', '.join(caption.dropped)}" if caption.dropped else "")
             + (f"; truncated: {', '.join(caption.truncated)}" if caption.truncated else ""),
             f"image: {source}, {explanation.image.shape[-1]}px",
             f"text encoder: word features {len(text.tokens)} x {text.word_features.shape[0]}, sentence feature "
             f"norm {float(text.sentence.norm()):.4f}",
             "  word norms: " + ", ".join(f"{w} {float(n):.4f}" for w, n in zip(text.tokens, text.word_norms))]
    c = explanation.conditioning
    if c is not None:
        lines.append(f"conditioning: |mu| {float(c.mu.norm()):.4f}, mean sigma {float(c.sigma.mean()):.4f}, "
                     f"|condition| {float(c.condition.norm()):.4f}, noise dimension {c.noise_dim}")
    m = explanation.damsm
    if m is None:
        lines.append("DAMSM: not available (the model folder has no image encoder)")
        return lines
    lines.append(f"DAMSM: sentence-image cosine {m.sentence_image_cosine:.4f}, word-region score "
                 f"{m.word_region_score:.4f} ({m.region_size}x{m.region_size} regions)")
    for word, attention in zip(text.tokens, m.attention):
        peak = int(attention.flatten().argmax())
        row, col = divmod(peak, m.region_size)
        lines.append(f"  {word}: attends most to region (row {row}, column {col}), weight {float(attention.max()):.3f}")
    return lines


def _draw(explanation: Explanation, out_dir: Path) -> list[Path]:
    """``image.png``, ``words.png`` (word features, signed heat map: a row per word) and, with
    DAMSM, ``damsm.png`` (each word's attention over the image)."""
    from types import SimpleNamespace

    from ..files import write_atomic
    from ..server.render import signed_heatmap_png
    from ..viz import attention_sheet, save_png, to_pil

    written = [save_png(to_pil(explanation.image[None])[0], out_dir / "image.png"),
               write_atomic(out_dir / "words.png", signed_heatmap_png(explanation.text.word_features.t().numpy()))]
    if explanation.damsm is not None:
        view = SimpleNamespace(images=[explanation.image[None]], attention_maps=[explanation.damsm.attention[None]],
                               captions=[explanation.caption], seeds=[explanation.seed or 0])
        written.append(save_png(attention_sheet(view, 0), out_dir / "damsm.png"))
    return written


@main.command("explain")
@click.argument("caption")
@click.option("--image", "image_path", type=click.Path(dir_okay=False),
              help="Image to score against CAPTION [the image the model generates with --seed].")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the generated image.")
@click.option("--out", "out_dir", default="outputs/explain", show_default=True, type=click.Path(file_okay=False),
              help="Folder for image.png, words.png and damsm.png.")
@model_options()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@pipeline_options
def explain_cmd(caption: str, image_path: str | None, seed: int, out_dir: str, model: str | None,
                revision: str | None, device: str, precision: str, exact: bool, backend: str,
                onnx_dir: str | None, truncation: float | None,
                candidates: int | None) -> None:
    """Explain CAPTION: its words and features, the conditioning of a generated image, and how well
    the DAMSM encoders think the image (--image, or the one generated) matches it."""
    from ..inference.explain import explain
    from ..text import UnknownWordsError

    pipe = load_pipeline(model, device, precision, backend, onnx_dir, exact, revision, truncation,
                         candidates)
    image = _read_image(image_path, pipe.config.generator.image_sizes[-1]) if image_path is not None else None
    try:
        explanation = explain(pipe, caption, image, seed=seed)
    except UnknownWordsError as exc:
        raise CaptionError(f"the caption argument: {exc}") from None
    generated = (f"generated, seed {seed}" + (f", truncation {pipe.truncation:g}" if pipe.truncation < 1.0 else "")
                 + (f", best of {pipe.candidates} candidates" if pipe.candidates > 1 else ""))
    for line in _lines(explanation, image_path if image_path is not None else generated):
        click.echo(line)
    written = _draw(explanation, Path(out_dir))
    click.echo(f"wrote {', '.join(str(p) for p in written)}")
