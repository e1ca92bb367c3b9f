"""The periodic evaluations of shapes runs as one markdown table (the rows of docs/experiments).

    .venv/bin/python benchmarks/eval_table.py RUN [RUN ...] [--header]

Reads ``RUN/evaluations.jsonl`` (written every ``run.eval_every`` steps with the ``scene_accuracy``
and ``diversity`` metrics) and prints one row per run and step: one-object shape, colour, size,
background and all-right accuracies, two-object shape and colour (the first and second object's
accuracies averaged), count and "both" (both objects right in every attribute), the pixel
diversity ratio (generated / real), and the share of two-object captions with two colours whose
objects were drawn at each other's places (``two_color_exchanged``; runs evaluated before it was
reported print ``-``). A missing figure prints as ``-``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

COLUMNS = ("one: shape", "colour", "size", "background", "all", "two: shape", "two: colour", "two: count",
           "two: both", "pixel diversity", "two: colour exchanged")


def _mean(values: dict[str, Any], *keys: str) -> float | None:
    found = [values[k] for k in keys if isinstance(values.get(k), (int, float))]
    return sum(found) / len(found) if len(found) == len(keys) else None


def row_figures(scene: dict[str, Any], diversity: dict[str, Any]) -> list[float | None]:
    """The table's figures from one step's ``scene_accuracy`` and ``diversity`` values."""
    return [_mean(scene, "one_shape"), _mean(scene, "one_color"), _mean(scene, "one_size"),
            _mean(scene, "one_background"), _mean(scene, "one_all"),
            _mean(scene, "two_first_shape", "two_second_shape"), _mean(scene, "two_first_color", "two_second_color"),
            _mean(scene, "two_count"), _mean(scene, "two_objects"), _mean(diversity, "diversity_pixels_ratio"),
            _mean(scene, "two_color_exchanged")]


def run_rows(run: Path) -> list[tuple[int, list[float | None]]]:
    """(step, figures) per evaluated step of ``run``, in step order; the last record of a step wins."""
    path = run / "evaluations.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: no evaluations (was the run started with run.eval_every?)")
    by_step: dict[int, dict[str, dict[str, Any]]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}:{number}: not JSON ({exc.msg})") from None
        by_step.setdefault(int(record.get("step", -1)), {})[str(record.get("metric"))] = record.get("values") or {}
    return [(step, row_figures(m.get("scene_accuracy", {}), m.get("diversity", {})))
            for step, m in sorted(by_step.items())]


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--header", action="store_true", help="Print the table's header first.")
    args = parser.parse_args()
    if args.header:
        print("| run | step | " + " | ".join(COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 2) + "|")
    for run in args.runs:
        for step, figures in run_rows(run):
            cells = [_cell(v, 2 if name == "pixel diversity" else 3) for name, v in zip(COLUMNS, figures, strict=True)]
            print(f"| {run.name} | {step:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
