"""Exports of generations: CSV, JSONL and (with pyarrow) Parquet, one row per image.

Every write goes to a temporary file in the target's folder, is fsynced and then
renamed over the target, so a crash never leaves a half-written export. Appending
copies the existing file into the temporary one first, so the old rows stay valid.

Columns: ``time`` (ISO-8601, UTC), ``caption`` (as typed), ``tokens`` (words used),
``dropped`` (unknown words), ``truncated`` (known words cut beyond ``max_words``),
``seed``, ``stage`` (resolution in pixels), ``model``, ``model_hash``, ``settings``
(JSON object), and the image: ``image_png_base64`` or ``image_path`` (relative to the
export's folder).
"""

from __future__ import annotations

import base64
import binascii
import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from ..files import atomic_file, write_atomic
from ..viz import image_from_png_bytes, png_base64, to_pil
from .pipeline import PipelineOutput

log = logging.getLogger(__name__)

FIELDS = ("time", "caption", "tokens", "dropped", "truncated", "seed", "stage", "model", "model_hash", "settings",
          "image_png_base64", "image_path")
LIST_FIELDS = ("tokens", "dropped", "truncated")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
CSV_FIELD_LIMIT = 1 << 30  # base64 PNGs are longer than csv's default 128 KiB field limit


class ExportError(ValueError):
    """An export file cannot be read or written; the message names the file and row."""


@dataclass
class ExportRow:
    """One generated image and how it was made."""

    time: str
    caption: str
    tokens: list[str]
    dropped: list[str]
    truncated: list[str]
    seed: int
    stage: int
    model: str
    model_hash: str
    settings: dict[str, Any]
    image_png_base64: str | None = None
    image_path: str | None = None
    base_dir: Path | None = field(default=None, repr=False, compare=False)  # folder of the file it was read from
    where: str = field(default="", repr=False, compare=False)  # "<file> line N", for messages

    def to_dict(self) -> dict[str, Any]:
        """The exported columns."""
        return {name: getattr(self, name) for name in FIELDS}

    def png_bytes(self) -> bytes:
        """The PNG, from ``image_png_base64`` or from ``image_path`` inside the export's folder."""
        where = self.where or "export row"
        if self.image_png_base64:
            try:
                return base64.b64decode(self.image_png_base64.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError) as exc:
                raise ExportError(f"{where}: image_png_base64 is not valid base64 ({exc})") from None
        if not self.image_path:
            raise ExportError(f"{where}: no image (neither image_png_base64 nor image_path)")
        if self.base_dir is None:
            raise ExportError(f"{where}: image_path {self.image_path!r} needs the export's folder (use read_export)")
        base = self.base_dir.resolve()
        target = (base / self.image_path).resolve()
        if not target.is_relative_to(base):
            raise ExportError(f"{where}: image_path {self.image_path!r} points outside the export's folder {base}")
        try:
            return target.read_bytes()
        except OSError as exc:
            raise ExportError(f"{where}: cannot read image {target} ({exc.strerror or exc})") from None

    def image(self) -> Image.Image:
        """The decoded image (RGB)."""
        try:
            return image_from_png_bytes(self.png_bytes())
        except ExportError:
            raise
        except ValueError as exc:
            raise ExportError(f"{self.where or 'export row'}: {exc}") from None


def utc_now() -> str:
    """Current time, ISO-8601 UTC with milliseconds (``2024-05-01T12:00:00.000+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def rows_from_output(output: PipelineOutput, stage: int = -1, time: str | None = None,
                     extra_settings: dict[str, Any] | None = None) -> list[ExportRow]:
    """One row per image of ``output`` at ``stage`` (default: the last), image embedded as PNG.

    ``settings`` holds the pipeline settings (precision, device, num_stages, backend),
    the exported ``stage_index`` and ``extra_settings``.
    """
    num_stages = len(output.images)
    if not -num_stages <= stage < num_stages:
        raise IndexError(f"stage {stage} out of range for {num_stages} stages")
    images = output.images[stage]  # [N, 3, S, S]
    settings = {k: v for k, v in output.settings.items() if k not in ("model", "model_hash")}
    settings.update({"stage_index": stage % num_stages, **(extra_settings or {})})
    stamp = time or utc_now()
    rows = []
    for i, (encoded, seed) in enumerate(zip(output.captions, output.seeds, strict=True)):
        rows.append(ExportRow(
            time=stamp, caption=encoded.text, tokens=list(encoded.tokens), dropped=list(encoded.dropped),
            truncated=list(encoded.truncated), seed=int(seed), stage=int(images.shape[-1]),
            model=str(output.settings.get("model", "")), model_hash=str(output.settings.get("model_hash", "")),
            settings=dict(settings), image_png_base64=png_base64(to_pil(images[i:i + 1])[0])))
    return rows


# --------------------------------------------------------------------------- writing
def export_format(path: str | os.PathLike[str]) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the file suffix."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ExportError(f"{path}: unknown export format (use .csv, .jsonl or .parquet)")
    return fmt


def slugify(text: str, max_length: int = 48) -> str:
    """``"A Red circle, on the LEFT!"`` -> ``"a-red-circle-on-the-left"`` (``"image"`` if empty)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_length].rstrip("-")
    return slug or "image"


def _with_image_file(row: ExportRow, images_dir: Path, base: Path) -> ExportRow:
    data = row.png_bytes()
    name = f"{slugify(row.caption)}_{row.seed}_{row.stage}_{hashlib.sha256(data).hexdigest()[:10]}.png"
    target = images_dir / name
    if not target.exists():
        write_atomic(target, data)
    return dataclasses.replace(row, image_png_base64=None, image_path=target.relative_to(base).as_posix())


def _with_embedded_image(row: ExportRow) -> ExportRow:
    if row.image_png_base64:
        return row
    return dataclasses.replace(row, image_png_base64=base64.b64encode(row.png_bytes()).decode("ascii"),
                               image_path=None)


def write_export(path: str | os.PathLike[str], rows: Sequence[ExportRow], append: bool = False,
                 image_files: bool = False) -> Path:
    """Write ``rows`` to a ``.csv``, ``.jsonl`` or ``.parquet`` file, atomically.

    Args:
        append: keep the rows already in ``path`` (its columns must match).
        image_files: write each image as a PNG in ``<stem>_images/`` beside the export and
            store ``image_path``; otherwise embed ``image_png_base64``.
    """
    path = Path(path)
    fmt = export_format(path)
    base = path.parent.resolve()
    if image_files:
        images_dir = base / f"{path.stem}_images"
        rows = [_with_image_file(r, images_dir, base) for r in rows]
    else:
        rows = [_with_embedded_image(r) for r in rows]
    existing = path if append and path.exists() else None
    if fmt == "parquet":
        _write_parquet(path, rows, existing)
        return path
    if existing is not None:
        _check_appendable(existing, fmt)
    with atomic_file(path) as f:
        if existing is not None:
            with open(existing, "rb") as old:
                while chunk := old.read(1 << 20):
                    f.write(chunk)
        if fmt == "jsonl":
            for row in rows:
                f.write((json.dumps(row.to_dict(), ensure_ascii=False) + "\n").encode("utf-8"))
        else:
            text = io.TextIOWrapper(f, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\n")
            if existing is None:
                writer.writerow(FIELDS)
            for row in rows:
                writer.writerow(_csv_values(row))
            text.flush()
            text.detach()
    log.info("wrote %d rows to %s", len(rows), path)
    return path


def _csv_values(row: ExportRow) -> list[str]:
    values = []
    for name in FIELDS:
        value = getattr(row, name)
        if name in LIST_FIELDS or name == "settings":
            value = json.dumps(value, ensure_ascii=False)
        values.append("" if value is None else str(value))
    return values


def _check_appendable(path: Path, fmt: str) -> None:
    size = path.stat().st_size
    if size == 0:
        raise ExportError(f"{path}: cannot append to an empty file (write it anew)")
    with open(path, "rb") as f:
        f.seek(size - 1)
        if f.read(1) != b"\n":
            raise ExportError(f"{path}: the last line is incomplete; refusing to append")
        if fmt == "csv":
            f.seek(0)
            header = next(csv.reader([f.readline().decode("utf-8", "replace")]), [])
            if tuple(header) != FIELDS:
                raise ExportError(f"{path} line 1: columns {header} differ from {list(FIELDS)}")


def _arrow_schema() -> Any:
    import pyarrow as pa

    text, words = pa.string(), pa.list_(pa.string())
    types = {"tokens": words, "dropped": words, "truncated": words, "seed": pa.int64(), "stage": pa.int64()}
    return pa.schema([(name, types.get(name, text)) for name in FIELDS])


def _write_parquet(path: Path, rows: Sequence[ExportRow], existing: Path | None) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError(f"{path}: Parquet needs pyarrow (pip install 'attngan[parquet]')") from None
    records = [{**row.to_dict(), "settings": json.dumps(row.settings, ensure_ascii=False)} for row in rows]
    table = pa.Table.from_pylist(records, schema=_arrow_schema())
    if existing is not None:
        try:
            old = pq.read_table(existing)
        except (OSError, pa.ArrowException) as exc:
            raise ExportError(f"{existing}: not a readable Parquet file ({exc}); refusing to append") from None
        if old.schema.names != list(FIELDS):
            raise ExportError(f"{existing}: columns {old.schema.names} differ from {list(FIELDS)}")
        table = pa.concat_tables([old.cast(table.schema), table])
    with atomic_file(path) as f:
        pq.write_table(table, f)
    log.info("wrote %d rows to %s", table.num_rows, path)


# --------------------------------------------------------------------------- reading
def read_export(path: str | os.PathLike[str]) -> list[ExportRow]:
    """All rows of a ``.csv``, ``.jsonl`` or ``.parquet`` export; errors name the file and line/row."""
    path = Path(path)
    fmt = export_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"export file not found: {path}")
    base = path.parent.resolve()
    if fmt == "jsonl":
        return list(_read_jsonl(path, base))
    if fmt == "csv":
        return list(_read_csv(path, base))
    return list(_read_parquet(path, base))


def _read_jsonl(path: Path, base: Path) -> Iterator[ExportRow]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ExportError(f"{where}: invalid JSON ({exc.msg})") from None
            yield _row(data, where, base)


def _read_csv(path: Path, base: Path) -> Iterator[ExportRow]:
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, CSV_FIELD_LIMIT))
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(header) != FIELDS:
                raise ExportError(f"{path} line 1: expected the columns {list(FIELDS)}, got {header}")
            for values in reader:
                where = f"{path} line {reader.line_num}"
                if len(values) != len(FIELDS):
                    raise ExportError(f"{where}: expected {len(FIELDS)} values, got {len(values)}")
                data: dict[str, Any] = dict(zip(FIELDS, values, strict=True))
                for name in (*LIST_FIELDS, "settings"):
                    try:
                        data[name] = json.loads(data[name])
                    except json.JSONDecodeError:
                        raise ExportError(f"{where}: field {name!r} is not valid JSON") from None
                for name in ("seed", "stage"):
                    try:
                        data[name] = int(data[name])
                    except ValueError:
                        raise ExportError(f"{where}: field {name!r} is not an integer: {data[name]!r}") from None
                for name in ("image_png_base64", "image_path"):
                    data[name] = data[name] or None
                yield _row(data, where, base)
    except csv.Error as exc:
        raise ExportError(f"{path}: malformed CSV ({exc})") from None
    finally:
        csv.field_size_limit(previous)


def _read_parquet(path: Path, base: Path) -> Iterator[ExportRow]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError(f"{path}: reading Parquet needs pyarrow (pip install 'attngan[parquet]')") from None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ExportError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [name for name in FIELDS if name not in table.schema.names]
    if missing:
        raise ExportError(f"{path}: missing column(s) {', '.join(missing)}")
    for number, data in enumerate(table.select(list(FIELDS)).to_pylist(), start=1):
        where = f"{path} row {number}"
        try:
            data["settings"] = json.loads(data["settings"]) if data["settings"] is not None else None
        except json.JSONDecodeError:
            raise ExportError(f"{where}: field 'settings' is not valid JSON") from None
        yield _row(data, where, base)


def _row(data: Any, where: str, base: Path) -> ExportRow:
    """Validate one decoded row."""
    if not isinstance(data, dict):
        raise ExportError(f"{where}: expected an object, got {type(data).__name__}")
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise ExportError(f"{where}: missing field(s) {', '.join(missing)}")
    for name in ("time", "caption", "model", "model_hash"):
        if not isinstance(data[name], str):
            raise ExportError(f"{where}: field {name!r} must be a string")
    for name in LIST_FIELDS:
        if not isinstance(data[name], list) or not all(isinstance(w, str) for w in data[name]):
            raise ExportError(f"{where}: field {name!r} must be a list of strings")
    for name in ("seed", "stage"):
        if not isinstance(data[name], int) or isinstance(data[name], bool):
            raise ExportError(f"{where}: field {name!r} must be an integer")
    if not isinstance(data["settings"], dict):
        raise ExportError(f"{where}: field 'settings' must be an object")
    for name in ("image_png_base64", "image_path"):
        if data[name] is not None and not isinstance(data[name], str):
            raise ExportError(f"{where}: field {name!r} must be a string or null")
    if not data["image_png_base64"] and not data["image_path"]:
        raise ExportError(f"{where}: no image (neither image_png_base64 nor image_path)")
    try:
        datetime.fromisoformat(data["time"])
    except ValueError:
        raise ExportError(f"{where}: field 'time' is not an ISO-8601 time: {data['time']!r}") from None
    values = {name: data[name] for name in FIELDS}
    return ExportRow(**values, base_dir=base, where=where)
