"""Pictures of generations: word-attention sheets, sample grids, PNG helpers.

Every function here is pure (tensors in, PIL images or bytes out) except
:func:`save_png`, which writes one file atomically.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .files import write_atomic
from .text import EncodedCaption


class AttendedImages(Protocol):
    """What an attention sheet draws (:class:`~attngan.inference.pipeline.PipelineOutput` is one):
    images ``[N, 3, S, S]`` per stage, word attention ``[N, T, H, W]`` per refinement stage, and
    each image's caption and seed."""

    @property
    def images(self) -> Sequence[torch.Tensor]: ...

    @property
    def attention_maps(self) -> Sequence[torch.Tensor]: ...

    @property
    def captions(self) -> Sequence[EncodedCaption]: ...

    @property
    def seeds(self) -> Sequence[int]: ...

PAD = 4  # pixels between panels and around the sheet
MIN_PANEL = 128  # attention panels are at least this wide: a 16 px stage and its map are readable, a word fits
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


def _font() -> Font:
    return ImageFont.load_default()


def _line_height(font: Font) -> int:
    box = font.getbbox("Hgy")
    return int(box[3]) + 2


def _fit(text: str, font: Font, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _wrap(text: str, font: Font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels (overlong words are cut)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(_fit(current, font, width))
            current = word
    if current:
        lines.append(_fit(current, font, width))
    return lines or [""]


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, H, W, 3]`` uint8."""
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """``[N, 3, H, W]`` in [-1, 1] -> PIL RGB images."""
    return [Image.fromarray(a) for a in _to_uint8(images)]


def _resize(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, C, size, size]``."""
    images = images.detach().float().cpu()
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if mode == "nearest":
        return F.interpolate(images, size=(size, size), mode="nearest")
    return F.interpolate(images, size=(size, size), mode=mode, align_corners=False)


def _picture(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, 3, S, S]`` shown at ``size`` px: nearest neighbours when enlarging (every generated
    pixel a sharp block, nothing invented between them), antialiased bilinear when shrinking."""
    images = images.detach().float().cpu()
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if size > images.shape[-1]:
        return F.interpolate(images, size=(size, size), mode="nearest")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _heat(m: np.ndarray) -> np.ndarray:
    """Jet-like colour map: ``[H, W]`` in [0, 1] -> ``[H, W, 3]`` in [0, 1]."""
    return np.clip(1.5 - np.abs(4.0 * m[..., None] - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)


def normalise_attention(maps: np.ndarray) -> np.ndarray:
    """``[T, H, W]`` attention of one image's words -> [0, 1] by the min and max over all
    words, so panels compare: a word attended more than the others looks brighter."""
    low, high = float(maps.min()), float(maps.max())
    if high - low <= 1e-12:
        return np.full_like(maps, 0.5)
    return (maps - low) / (high - low)


def blend_attention(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Overlay one word's attention on an image.

    Args:
        image: ``[S, S, 3]`` uint8.
        weight: ``[S, S]`` attention normalised to [0, 1] (see :func:`normalise_attention`).
    Returns:
        ``[S, S, 3]`` uint8: the image brightened where the word is attended, tinted by a heat map.
    """
    m = np.clip(weight, 0.0, 1.0)
    base = image.astype(np.float32) / 255.0
    out = 0.6 * base * (0.3 + 0.7 * m[..., None]) + 0.4 * _heat(m)
    return (np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _attention_rows(output: AttendedImages, stage: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(label, images [N, 3, S, S], attention [N, T, H, W])`` per refinement stage up to
    ``stage``, the last first (so the sheet starts with the generated image)."""
    images, maps = output.images, output.attention_maps
    if len(images) == 1:  # single-image generator: every attention map belongs to its one image
        rows = [(f"attention {r + 1}", images[0], maps[r]) for r in range(len(maps))]
    else:
        rows = [(f"stage {r + 1}", images[r], maps[r - 1]) for r in range(1, stage + 1) if r - 1 < len(maps)]
    return rows[::-1]


def attention_sheet(output: AttendedImages, index: int, stage: int = -1, panel_size: int | None = None) -> Image.Image:
    """The paper's attention figure for image ``index`` of ``output``.

    One row per refinement stage up to ``stage`` (default: the last), that stage first so
    the generated image is at the top left. Each row shows the stage's image,
    then one panel per used word showing the word's attention map (``[T, H, W]``,
    bilinearly upsampled) blended over the image, the word written under it. Every panel is
    at least ``MIN_PANEL`` (128) px wide: smaller stage images are enlarged with nearest
    neighbours (their pixels stay sharp), the coarser maps bilinearly. A model with one
    stage has no word attention: the sheet is the image with a note.

    Args:
        output: a pipeline result.
        index: which image of ``output`` (0..N-1).
        stage: image stage whose resolution the panels use (negative counts from the end).
        panel_size: panel width in pixels, at least ``MIN_PANEL`` (default: that resolution,
            at least ``MIN_PANEL``).
    """
    n = len(output.seeds)
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for {n} images")
    num_stages = len(output.images)
    if not -num_stages <= stage < num_stages:
        raise IndexError(f"stage {stage} out of range for {num_stages} stages")
    stage %= num_stages
    if panel_size is not None and panel_size < MIN_PANEL:
        raise ValueError(f"panel_size must be at least {MIN_PANEL} px (a readable panel), got {panel_size}")
    size = int(output.images[stage].shape[-1])
    panel = panel_size or max(size, MIN_PANEL)
    font = _font()
    label_h = _line_height(font)
    words = output.captions[index].tokens
    rows = _attention_rows(output, stage)
    if not rows:
        note = "no word attention (single stage)"
        width = max(panel, int(font.getlength(note))) + 2 * PAD
        sheet = Image.new("RGB", (width, panel + label_h + 2 * PAD), BACKGROUND)
        picture = _to_uint8(_picture(output.images[stage][index:index + 1], panel))[0]
        sheet.paste(Image.fromarray(picture), (PAD, PAD))
        ImageDraw.Draw(sheet).text((PAD, PAD + panel + 1), note, fill=TEXT, font=font)
        return sheet
    width, height = attention_sheet_size(len(words), len(rows), panel, label_h)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for row, (label, images, maps) in enumerate(rows):
        top = PAD + row * (panel + label_h + PAD)
        picture = _to_uint8(_picture(images[index:index + 1], panel))[0]
        sheet.paste(Image.fromarray(picture), (PAD, top))
        draw.text((PAD, top + panel + 1), _fit(f"{label}: {images.shape[-1]}px", font, panel), fill=TEXT, font=font)
        attention = normalise_attention(_resize(maps[index:index + 1, : len(words)], panel, "bilinear")[0].numpy())
        for k, word in enumerate(words):
            left = PAD + (k + 1) * (panel + PAD)
            sheet.paste(Image.fromarray(blend_attention(picture, attention[k])), (left, top))
            draw.text((left, top + panel + 1), _fit(word, font, panel), fill=TEXT, font=font)
    return sheet


def attention_sheet_size(num_words: int, num_rows: int, panel_size: int, label_height: int | None = None) -> tuple[int, int]:
    """``(width, height)`` of an :func:`attention_sheet` with ``num_words`` word panels per row."""
    label_h = _line_height(_font()) if label_height is None else label_height
    return PAD + (num_words + 1) * (panel_size + PAD), PAD + num_rows * (panel_size + label_h + PAD)


def sample_grid(images_per_stage: Sequence[torch.Tensor], captions: Sequence[str], text_width: int = 240,
                column_labels: Sequence[str] | None = None) -> Image.Image:
    """Rows = samples, columns = stages (nearest-upsampled to the largest size), caption beside.

    Args:
        images_per_stage: per stage ``[N, 3, S_s, S_s]`` in [-1, 1]; same N for every stage.
        captions: N captions.
        text_width: width in pixels of the caption column.
        column_labels: a heading per column (default: each stage's size, e.g. ``64px``).
    """
    if not images_per_stage:
        raise ValueError("images_per_stage: give at least one stage")
    n = int(images_per_stage[0].shape[0])
    for s, images in enumerate(images_per_stage):
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] != n:
            raise ValueError(f"images_per_stage[{s}]: expected [{n}, 3, S, S], got {tuple(images.shape)}")
    if len(captions) != n:
        raise ValueError(f"captions: expected {n} (one per sample), got {len(captions)}")
    if column_labels is not None and len(column_labels) != len(images_per_stage):
        raise ValueError(f"column_labels: expected {len(images_per_stage)}, got {len(column_labels)}")
    size = max(int(images.shape[-1]) for images in images_per_stage)
    font = _font()
    line_h = _line_height(font)
    columns = [_to_uint8(_resize(images, size, "nearest")) for images in images_per_stage]
    wrapped = [_wrap(c, font, text_width) for c in captions]
    heights = [max(size, len(lines) * line_h) for lines in wrapped]
    grid_w = PAD + len(columns) * (size + PAD)
    sheet = Image.new("RGB", (grid_w + text_width + PAD, line_h + PAD + sum(h + PAD for h in heights)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for s, images in enumerate(images_per_stage):
        label = f"{images.shape[-1]}px" if column_labels is None else _fit(column_labels[s], font, size)
        draw.text((PAD + s * (size + PAD), 1), label, fill=TEXT, font=font)
    draw.text((grid_w, 1), "caption", fill=TEXT, font=font)
    top = line_h + PAD
    for i in range(n):
        for s, column in enumerate(columns):
            sheet.paste(Image.fromarray(column[i]), (PAD + s * (size + PAD), top))
        for k, line in enumerate(wrapped[i]):
            draw.text((grid_w, top + k * line_h), line, fill=TEXT, font=font)
        top += heights[i] + PAD
    return sheet


def image_to_png_bytes(image: Image.Image) -> bytes:
    """Lossless PNG encoding of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_base64(image: Image.Image) -> str:
    """PNG of ``image`` as base64 text (ASCII)."""
    return base64.b64encode(image_to_png_bytes(image)).decode("ascii")


def image_from_png_bytes(data: bytes) -> Image.Image:
    """Decode PNG bytes (fully loaded; raises ``ValueError`` on corrupt data)."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"not a valid PNG image ({exc})") from None
    return image


def image_from_png_base64(text: str) -> Image.Image:
    """Inverse of :func:`png_base64`."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"invalid base64 image data ({exc})") from None
    return image_from_png_bytes(data)


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save ``image`` as a PNG file atomically (a crash never leaves a partial file)."""
    return write_atomic(path, image_to_png_bytes(image))
