"""Attention sheets, sample grids and PNG helpers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attngan.inference.pipeline import AttnGANPipeline
from attngan.viz import (
    MIN_PANEL,
    PAD,
    attention_sheet,
    attention_sheet_size,
    image_from_png_base64,
    image_to_png_bytes,
    png_base64,
    sample_grid,
    save_png,
)

from .conftest import TINY_WORDS, make_tiny_bundle


@pytest.fixture(scope="module")
def pipe(tiny_model_dir: Path) -> AttnGANPipeline:
    return AttnGANPipeline.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def long_pipe() -> AttnGANPipeline:
    """The tiny model reading up to 18 words."""
    bundle = make_tiny_bundle()
    te = dataclasses.replace(bundle.config.text_encoder, max_words=18)
    bundle.config = dataclasses.replace(bundle.config, text_encoder=te)
    return AttnGANPipeline(bundle)


def panel_starts(sheet: Image.Image, top: int, panel: int) -> list[int]:
    """Left edges of the non-white panels along the row starting at ``top``."""
    row = np.asarray(sheet)[top + panel // 2]
    starts, x = [], PAD
    while x + panel <= sheet.width:
        if not (row[x:x + panel] == 255).all():
            starts.append(x)
        x += panel + PAD
    return starts


def blocks(image: Image.Image, factor: int) -> np.ndarray:
    """``image`` enlarged ``factor`` times with nearest neighbours (each pixel a block)."""
    return np.repeat(np.repeat(np.asarray(image), factor, 0), factor, 1)


@pytest.mark.parametrize("num_words", [1, 5, 18])
def test_attention_sheet_size_and_panels(long_pipe: AttnGANPipeline, num_words: int) -> None:
    caption = " ".join(TINY_WORDS[k % len(TINY_WORDS)] for k in range(num_words))
    out = long_pipe(caption, seed=0)
    assert len(out.captions[0].tokens) == num_words
    sheet = attention_sheet(out, 0)
    rows = long_pipe.num_stages - 1
    assert MIN_PANEL == 128  # the tiny model's 64 px images are shown at 128 px
    assert sheet.size == attention_sheet_size(num_words, rows, MIN_PANEL)
    for r in range(rows):
        top = PAD + r * (sheet.height - PAD) // rows
        assert len(panel_starts(sheet, top, MIN_PANEL)) == num_words + 1
    # the top-left panel is the generated image itself, each pixel a sharp 2x2 block
    top_left = np.asarray(sheet)[PAD:PAD + MIN_PANEL, PAD:PAD + MIN_PANEL]
    assert np.array_equal(top_left, blocks(out.pil()[0], 2))
    # the second row starts with the 32 px stage 2 image, enlarged 4 times
    second = PAD + (sheet.height - PAD) // rows
    assert np.array_equal(np.asarray(sheet)[second:second + MIN_PANEL, PAD:PAD + MIN_PANEL], blocks(out.pil(1)[0], 4))


def test_attention_sheet_stage_and_single_stage(pipe: AttnGANPipeline) -> None:
    out = pipe(["a red circle", "big blue square on the left"], seed=3)
    words = len(out.captions[1].tokens)
    one_row = attention_sheet(out, 1, stage=1)  # 32 px panels shown at MIN_PANEL
    assert one_row.size == attention_sheet_size(words, 1, MIN_PANEL)
    big = attention_sheet(out, 1, panel_size=192)
    assert big.size == attention_sheet_size(words, 2, 192)
    with pytest.raises(ValueError, match="panel_size must be at least 128"):
        attention_sheet(out, 1, panel_size=96)
    first = attention_sheet(out, 0, stage=0)  # the first stage has no attention
    assert first.width < 2 * (MIN_PANEL + PAD) + 200 and first.height < MIN_PANEL + 40
    with pytest.raises(IndexError):
        attention_sheet(out, 2)
    with pytest.raises(IndexError):
        attention_sheet(out, 0, stage=3)

    single = AttnGANPipeline(make_tiny_bundle(num_stages=1))("a red circle", seed=0)
    assert single.attention_maps == []
    note = attention_sheet(single, 0)
    assert note.height == attention_sheet(out, 0, stage=0).height
    shown = np.asarray(note)[PAD:PAD + MIN_PANEL, PAD:PAD + MIN_PANEL]
    assert np.array_equal(shown, blocks(single.pil()[0], 8))  # the 16 px image, each pixel an 8x8 block


def test_attention_maps_are_upsampled_smoothly(pipe: AttnGANPipeline) -> None:
    out = pipe("a small red circle", seed=1)
    maps = torch.zeros_like(out.attention_maps[-1])  # [1, T, 32, 32]
    maps[0, 2, 16, 16] = 1  # one attended position of "red"
    out.attention_maps[-1] = maps
    sheet = np.asarray(attention_sheet(out, 0)).astype(float)
    panel = sheet[PAD:PAD + MIN_PANEL, PAD + 3 * (MIN_PANEL + PAD):PAD + 3 * (MIN_PANEL + PAD) + MIN_PANEL]
    image = blocks(out.pil()[0], 2).astype(float)
    lift = (panel - image).mean(axis=-1)  # how much the overlay brightens each pixel
    peak = np.unravel_index(np.argmax(lift), lift.shape)
    assert abs(peak[0] - 66) <= 3 and abs(peak[1] - 66) <= 3  # map cell 16 of 32 -> pixels 64..67 of 128
    # bilinear: the highlight fades over several pixels instead of a sharp 4x4 block
    profile = lift[peak[0], peak[1] - 8:peak[1] + 9]
    assert len(np.unique(np.round(profile))) > 4


def test_attention_panels_follow_the_maps(pipe: AttnGANPipeline) -> None:
    out = pipe("a small red circle", seed=1)
    maps = torch.zeros_like(out.attention_maps[-1])
    maps[0, 2] = 1  # all of the last stage's attention on "red"
    out.attention_maps[-1] = maps
    sheet = np.asarray(attention_sheet(out, 0)).astype(float)
    top, p = PAD, MIN_PANEL  # the first row: the last stage
    panels = [sheet[top + 16:top + p - 16, PAD + k * (p + PAD) + 16:PAD + k * (p + PAD) + p - 16] for k in range(1, 5)]
    brightness = [p.mean() for p in panels]
    assert brightness[2] > max(brightness[0], brightness[1], brightness[3]) + 20


def test_sample_grid(pipe: AttnGANPipeline) -> None:
    captions = ["a red circle", "a blue square on the left of the image with a long caption that wraps", "green"]
    out = pipe(captions, seed=0)
    grid = sample_grid(out.images, captions)
    assert grid.width == PAD + 3 * (64 + PAD) + 240 + PAD
    assert grid.height >= 3 * (64 + PAD)
    arr = np.asarray(grid)
    top = grid.height - PAD - 64  # last sample, last column: the 64 px image itself
    assert np.array_equal(arr[top:top + 64, PAD + 2 * 68:PAD + 2 * 68 + 64], np.asarray(out.pil()[2]))
    # the 16 px stage is upsampled with nearest neighbours: 4x4 blocks
    first = arr[top:top + 64, PAD:PAD + 64]
    assert np.array_equal(first, np.repeat(np.repeat(np.asarray(out.pil(0)[2]), 4, 0), 4, 1))
    with pytest.raises(ValueError, match="captions"):
        sample_grid(out.images, captions[:2])
    with pytest.raises(ValueError, match=r"images_per_stage\[1\]"):
        sample_grid([out.images[0], out.images[1][:2]], captions)


def test_png_helpers_round_trip(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    assert image_to_png_bytes(image)[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(image_from_png_base64(png_base64(image))), pixels)
    with pytest.raises(ValueError, match="base64"):
        image_from_png_base64("not base64!")
    with pytest.raises(ValueError, match="PNG"):
        image_from_png_base64("aGVsbG8=")
    path = save_png(image, tmp_path / "sub" / "a.png")
    assert np.array_equal(np.asarray(Image.open(path)), pixels)


def test_save_png_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_png(Image.new("RGB", (4, 4), (1, 2, 3)), tmp_path / "a.png")
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("attngan.viz.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_png(Image.new("RGB", (4, 4), (9, 9, 9)), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_pure_functions_leave_inputs_alone(pipe: AttnGANPipeline) -> None:
    out = pipe("a red circle", seed=0)
    copies = [t.clone() for t in out.images + out.attention_maps]
    attention_sheet(out, 0)
    sample_grid(out.images, ["a red circle"])
    assert all(torch.equal(a, b) for a, b in zip(copies, out.images + out.attention_maps))
