"""A report folder of an evaluation (``attngan evaluate --report DIR``): ``report.md`` (the run,
the results table and the notes, with the pictures), ``samples.png`` (generated images beside
the real images of the same captions), one ``confusion-<name>.png`` per attribute (what the
caption asks for against what the classifier reads) and ``results.jsonl`` (the records)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from ..files import write_atomic
from ..viz import sample_grid, save_png
from .engine import record_notes, table_lines
from .run import EvalResult

CELL = 34  # pixels per confusion-matrix cell


def confusion_image(counts: torch.Tensor, row_labels: Sequence[str], col_labels: Sequence[str],
                    title: str) -> Image.Image:
    """A confusion matrix ``counts [R, C]`` as a picture: cells shaded by their share of the row,
    the count written in each, rows (what the caption asks for) and columns (what was read)
    labelled."""
    counts = counts.to(torch.int64)
    rows, cols = counts.shape
    if len(row_labels) != rows or len(col_labels) != cols:
        raise ValueError(f"labels: expected {rows} row and {cols} column labels")
    font = ImageFont.load_default()
    text_w = int(max(font.getlength(str(x)) for x in [*row_labels, "caption"])) + 8
    label_h = int(max(font.getlength(str(x)) for x in [*col_labels, "read"])) + 8
    top = 18 + label_h
    image = Image.new("RGB", (text_w + cols * CELL + 8, top + rows * CELL + 8), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((4, 2), title, fill=(0, 0, 0), font=font)
    for c, label in enumerate(col_labels):  # column labels, written upwards
        strip = Image.new("RGB", (label_h, CELL), (255, 255, 255))
        ImageDraw.Draw(strip).text((4, CELL // 2 - 6), str(label), fill=(0, 0, 0), font=font)
        image.paste(strip.rotate(90, expand=True), (text_w + c * CELL, 18))
    totals = counts.sum(dim=1, keepdim=True).clamp(min=1)
    share = counts.double() / totals
    for r in range(rows):
        draw.text((4, top + r * CELL + CELL // 2 - 6), str(row_labels[r]), fill=(0, 0, 0), font=font)
        for c in range(cols):
            level = int(255 - 200 * float(share[r, c]))
            box = (text_w + c * CELL, top + r * CELL, text_w + (c + 1) * CELL - 1, top + (r + 1) * CELL - 1)
            draw.rectangle(box, fill=(level, level, 255) if r != c else (level, 255, level), outline=(200, 200, 200))
            value = int(counts[r, c])
            if value:
                text = str(value)
                colour = (255, 255, 255) if level < 120 else (0, 0, 0)
                draw.text((box[0] + (CELL - font.getlength(text)) / 2, box[1] + CELL // 2 - 6), text, fill=colour,
                          font=font)
    return image


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "attribute"


def write_report(folder: str | Path, result: EvalResult, header: Sequence[str] = ()) -> list[Path]:
    """Write the report of an :class:`~attngan.metrics.run.EvalResult` to ``folder``; returns the files.

    ``header``: lines describing the run (model, data, samples), put first in ``report.md``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    lines = table_lines(result.records)
    notes = record_notes(result.records) + [f"note: {n}" for n in result.notes]
    md = ["# Evaluation", "", *[f"- {h}" for h in header], "", "```", *lines, "```", ""]
    if notes:
        md += ["```", *notes, "```", ""]
    preview = result.details.get("preview") or {}
    if preview.get("captions"):
        grid = sample_grid([preview["generated"], preview["real"]], preview["captions"],
                           column_labels=("generated", "real"))
        written.append(save_png(grid, folder / "samples.png"))
        md += ["## Samples", "", "Generated images (left) beside the real images of the same captions (right).", "",
               "![samples](samples.png)", ""]
    confusion = result.details.get("confusion") or {}
    if confusion:
        md += ["## Confusion matrices", "", "Rows: what the caption asks for; columns: what the classifier reads "
               "in the generated image.", ""]
    for name, (counts, row_labels, col_labels) in confusion.items():
        file = f"confusion-{_slug(name)}.png"
        written.append(save_png(confusion_image(counts, row_labels, col_labels, name), folder / file))
        md += [f"![{name}]({file})", ""]
    records = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in result.records)
    written.append(write_atomic(folder / "results.jsonl", records.encode("utf-8")))
    written.append(write_atomic(folder / "report.md", ("\n".join(md) + "\n").encode("utf-8")))
    return written
