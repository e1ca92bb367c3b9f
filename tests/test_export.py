"""Exports of generations: round trips, appends, atomic writes, readable errors."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from attngan.inference.export import (
    FIELDS,
    ExportError,
    ExportRow,
    read_export,
    rows_from_output,
    write_export,
)
from attngan.inference.pipeline import AttnGANPipeline, PipelineOutput

CAPTIONS = [
    "a small red circle on the left",
    "blue square xyzzy on the top",  # one unknown word
    "a big green triangle on the right of the image bottom center tiny large",  # > 12 words: truncated
    "yellow",
]


def formats() -> list[str]:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return ["jsonl", "csv"]
    return ["jsonl", "csv", "parquet"]


@pytest.fixture(scope="module")
def output(tiny_model_dir: Path) -> PipelineOutput:
    """100 generations: 4 captions x 25 seeds."""
    pipe = AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32")
    return pipe(CAPTIONS, num_images=25, seed=1000)


@pytest.fixture(scope="module")
def rows(output: PipelineOutput) -> list[ExportRow]:
    return rows_from_output(output)


def test_rows_from_output(output: PipelineOutput, rows: list[ExportRow]) -> None:
    assert len(rows) == 100
    first, unknown, long = rows[0], rows[25], rows[50]
    assert first.caption == CAPTIONS[0] and first.tokens == ["a", "small", "red", "circle", "on", "the", "left"]
    assert unknown.dropped == ["xyzzy"] and "xyzzy" not in unknown.tokens
    assert len(long.tokens) == 12 and long.truncated == ["tiny", "large"]
    assert [r.seed for r in rows[:25]] == list(range(1000, 1025))
    assert {r.stage for r in rows} == {64}
    assert {r.model for r in rows} == {"tiny-test"} and all(len(r.model_hash) == 16 for r in rows)
    assert first.settings["precision"] == "fp32" and first.settings["num_stages"] == 3
    assert first.settings["device"] == "cpu" and first.settings["stage_index"] == 2
    stamp = datetime.fromisoformat(first.time)
    assert stamp.utcoffset() == timedelta(0)
    small = rows_from_output(output, stage=0)
    assert small[0].stage == 16 and small[0].image().size == (16, 16)


@pytest.mark.parametrize("image_files", [False, True], ids=["base64", "files"])
@pytest.mark.parametrize("fmt", formats())
def test_round_trip_100_generations(tmp_path: Path, output: PipelineOutput, rows: list[ExportRow], fmt: str,
                                    image_files: bool) -> None:
    path = write_export(tmp_path / f"gen.{fmt}", rows, image_files=image_files)
    back = read_export(path)
    assert len(back) == 100
    originals = output.pil()
    for row, original, expected in zip(back, originals, rows):
        assert row.to_dict().keys() == set(FIELDS)
        for name in ("time", "caption", "tokens", "dropped", "truncated", "seed", "stage", "model", "model_hash",
                     "settings"):
            assert getattr(row, name) == getattr(expected, name), name
        assert np.array_equal(np.asarray(row.image()), np.asarray(original))
        if image_files:
            assert row.image_png_base64 is None and row.image_path.startswith("gen_images/")
        else:
            assert row.image_path is None and row.image_png_base64
    if image_files:
        assert len(list((tmp_path / "gen_images").glob("*.png"))) == 100


@pytest.mark.parametrize("fmt", formats())
def test_append_keeps_existing_rows(tmp_path: Path, rows: list[ExportRow], fmt: str) -> None:
    path = tmp_path / f"gen.{fmt}"
    write_export(path, rows[:60])
    write_export(path, rows[60:], append=True)
    back = read_export(path)
    assert [r.seed for r in back] == [r.seed for r in rows]
    assert back[99].image_png_base64 == rows[99].image_png_base64
    write_export(path, rows[:5])  # without append: replaced
    assert len(read_export(path)) == 5


@pytest.mark.parametrize("fmt", formats())
def test_failure_mid_write_keeps_previous_file(tmp_path: Path, rows: list[ExportRow], fmt: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_export(tmp_path / f"gen.{fmt}", rows[:10])
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:  # every byte is written, then the disk fails
        raise OSError("I/O error")

    monkeypatch.setattr("attngan.inference.export.os.fsync", broken_fsync)
    with pytest.raises(OSError, match="I/O error"):
        write_export(path, rows[10:40], append=True)
    with pytest.raises(OSError, match="I/O error"):
        write_export(path, rows[10:40])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_unserialisable_row_fails_cleanly(tmp_path: Path, rows: list[ExportRow]) -> None:
    path = write_export(tmp_path / "gen.jsonl", rows[:3])
    before = path.read_bytes()
    bad = ExportRow(**{**rows[0].to_dict(), "settings": {"device": object()}})
    with pytest.raises(TypeError):
        write_export(path, [rows[3], rows[4], bad], append=True)  # fails after two rows were written
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["gen.jsonl"]


def test_errors_name_file_and_line(tmp_path: Path, rows: list[ExportRow]) -> None:
    path = write_export(tmp_path / "gen.jsonl", rows[:4])
    lines = path.read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # a truncated third row
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ExportError, match=r"gen\.jsonl line 3: invalid JSON"):
        read_export(path)
    record = json.loads(lines[1])
    record["seed"] = "twelve"
    path.write_text(lines[0] + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ExportError, match=r"gen\.jsonl line 2: field 'seed' must be an integer"):
        read_export(path)
    del record["caption"]
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ExportError, match="line 1: missing field"):
        read_export(path)

    csv_path = write_export(tmp_path / "gen.csv", rows[:3])
    text = csv_path.read_text().splitlines()
    text[2] = text[2].replace(f",{rows[1].seed},", ",x1,", 1)
    csv_path.write_text("\n".join(text) + "\n")
    with pytest.raises(ExportError, match=r"gen\.csv line 3: field 'seed' is not an integer"):
        read_export(csv_path)
    csv_path.write_text("a,b\n1,2\n")
    with pytest.raises(ExportError, match=r"gen\.csv line 1: expected the columns"):
        read_export(csv_path)
    with pytest.raises(ExportError, match="unknown export format"):
        read_export(tmp_path / "gen.txt")


def test_corrupt_image_and_bad_append_target(tmp_path: Path, rows: list[ExportRow]) -> None:
    record = rows[0].to_dict()
    record["image_png_base64"] = base64.b64encode(b"not a png").decode()
    path = tmp_path / "gen.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (row,) = read_export(path)
    with pytest.raises(ExportError, match=r"gen\.jsonl line 1: not a valid PNG"):
        row.image()
    path.write_text(json.dumps(rows[0].to_dict()))  # no final newline: an interrupted foreign write
    with pytest.raises(ExportError, match="incomplete"):
        write_export(path, rows[1:2], append=True)


def test_image_paths_must_stay_inside_the_export_folder(tmp_path: Path, rows: list[ExportRow]) -> None:
    folder = tmp_path / "exports"
    path = write_export(folder / "gen.jsonl", rows[:1], image_files=True)
    (tmp_path / "secret.png").write_bytes(rows[0].png_bytes())
    for bad in ("../secret.png", str(tmp_path / "secret.png")):
        record = {**rows[0].to_dict(), "image_png_base64": None, "image_path": bad}
        path.write_text(json.dumps(record) + "\n")
        (row,) = read_export(path)
        with pytest.raises(ExportError, match="outside the export's folder"):
            row.image()
    record = {**rows[0].to_dict(), "image_png_base64": None, "image_path": "gen_images/missing.png"}
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ExportError, match=r"line 1: cannot read image"):
        read_export(path)[0].image()


def test_rows_need_an_image(tmp_path: Path, rows: list[ExportRow]) -> None:
    record = {**rows[0].to_dict(), "image_png_base64": None}
    path = tmp_path / "gen.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ExportError, match="line 1: no image"):
        read_export(path)
