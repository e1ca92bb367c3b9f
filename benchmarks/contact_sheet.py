"""A contact sheet of a shapes model: one row per caption, one column per seed.

Rows vary one thing at a time from "a large red circle in the center": every shape, every colour,
both sizes, every position, then two-object captions (one of them with a held-out shape-colour
pair). Columns are seeds 0..N-1 of the final stage, so a glance shows what the model draws, what
it ignores and whether the noise changes anything.

    python benchmarks/contact_sheet.py                       # the bundled model -> docs/shapes-contact-sheet.png
    python benchmarks/contact_sheet.py --model runs/shapes/model --out sheet.png --seeds 6
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from attngan.data.shapes import COLORS, POSITIONS, SHAPES
from attngan.inference.pipeline import AttnGANPipeline
from attngan.viz import sample_grid, save_png

ROOT = Path(__file__).resolve().parents[1]
PHRASE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
          "center": "in the center"}


def captions() -> list[str]:
    """The sheet's rows, in order."""
    rows = [f"a large red {shape} in the center" for shape in SHAPES]
    rows += [f"a large {colour} circle in the center" for colour in COLORS if colour != "red"]
    rows += ["a small red circle in the center"]
    rows += [f"a large red circle {PHRASE[p]}" for p in POSITIONS if p != "center"]
    rows += ["a large blue square on the left and a small yellow star on the right",
             "a small green triangle at the top and a large pink heart at the bottom",
             "a large yellow circle on the left and a small red square on the right"]  # yellow circle: held out
    return rows


def contact_sheet(pipe: AttnGANPipeline, rows: list[str], seeds: int) -> object:
    """The sheet as a PIL image: ``rows`` captions x ``seeds`` seeds of the last stage."""
    columns = []
    for seed in range(seeds):
        out = pipe(rows, seed=[seed] * len(rows))
        columns.append(out.images[-1])
    return sample_grid(columns, rows, text_width=420, column_labels=[f"seed {s}" for s in range(seeds)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder [the bundled model]")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "shapes-contact-sheet.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    pipe = AttnGANPipeline.from_pretrained(args.model, precision="fp32") if args.model else \
        AttnGANPipeline.from_pretrained(precision="fp32")
    sheet = contact_sheet(pipe, captions(), args.seeds)
    save_png(sheet, args.out)  # type: ignore[arg-type]
    logging.info("wrote %s (%s, %d seeds, truncation %g, candidates %d: the model's own)", args.out, pipe.name,
                 args.seeds, pipe.truncation, pipe.candidates)


if __name__ == "__main__":
    main()
