"""``attngan generate``, ``attngan export-onnx`` and ``attngan show-export``."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .group import load_pipeline, main, model_options, pipeline_options

if TYPE_CHECKING:
    from ..inference.pipeline import PipelineOutput


class CaptionError(click.ClickException):
    """A caption the model cannot use (no known word): exit code 2."""

    exit_code = 2


def _read_captions(caption: str | None, captions_file: str | None) -> list[tuple[str, str]]:
    """``(caption, where)`` pairs: the argument first, then the file's non-blank lines."""
    items = [(caption, "the caption argument")] if caption is not None else []
    if captions_file is not None:
        try:
            lines = Path(captions_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"cannot read {captions_file}: {exc}") from None
        items += [(line.strip(), f"{captions_file} line {k}") for k, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise click.UsageError("give a caption or --captions FILE")
    return items


class _Names:
    """Output file stems ``<slug>_<seed>``; a slug already taken by another caption gets a suffix."""

    def __init__(self) -> None:
        self.slugs: dict[str, str] = {}

    def stem(self, caption: str, seed: int) -> str:
        from ..inference.export import slugify

        if caption not in self.slugs:
            base = slug = slugify(caption)
            taken = set(self.slugs.values())
            k = 2
            while slug in taken:
                slug, k = f"{base}-{k}", k + 1
            self.slugs[caption] = slug
        return f"{self.slugs[caption]}_{seed}"


def _save_images(output: PipelineOutput, out_dir: Path, names: _Names) -> list[list[Path]]:
    """Every stage's image and an attention sheet per image; returns the paths per image."""
    from ..viz import attention_sheet, save_png, to_pil

    stages = [to_pil(images) for images in output.images]
    written = []
    for i, (encoded, seed) in enumerate(zip(output.captions, output.seeds, strict=True)):
        stem = names.stem(encoded.text, seed)
        paths = [save_png(stage[i], out_dir / f"{stem}_{stage[i].width}.png") for stage in stages]
        paths.append(save_png(attention_sheet(output, i), out_dir / f"{stem}_attention.png"))
        written.append(paths)
    return written


def _summary(output: PipelineOutput, first: int, count: int) -> str:
    encoded = output.captions[first]
    seeds = output.seeds[first:first + count]
    seed_text = f"seed {seeds[0]}" if count == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
    sizes = "/".join(str(images.shape[-1]) for images in output.images)
    line = f"{encoded.text!r}: {count} image(s), {seed_text}, {sizes}px, {len(encoded.tokens)} word(s) used"
    if output.settings.get("truncation", 1.0) < 1.0:
        line += f", truncation {output.settings['truncation']:g}"
    if output.settings.get("candidates", 1) > 1:
        line += f", best of {output.settings['candidates']} candidates"
    if encoded.dropped:
        line += f"; dropped (unknown): {', '.join(encoded.dropped)}"
    if encoded.truncated:
        line += f"; truncated: {', '.join(encoded.truncated)}"
    return line


@main.command("generate")
@click.argument("caption", required=False)
@click.option("-n", "--num-images", default=1, show_default=True, type=click.IntRange(min=1), help="Images per caption.")
@click.option("--seed", type=click.IntRange(min=0), help="Base seed: image j of a caption uses seed + j [random].")
@click.option("--out", "out_dir", default="outputs", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the PNGs.")
@model_options()
@click.option("--stages", type=click.IntRange(min=1), help="Stop after this many stages [all].")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@pipeline_options
@click.option("--captions", "captions_file", type=click.Path(exists=True, dir_okay=False),
              help="Text file with one caption per line (blank lines ignored).")
@click.option("--export", "export_path", type=click.Path(dir_okay=False),
              help="Also write one row per image (last stage) to FILE.csv, .jsonl or .parquet.")
@click.option("--append", is_flag=True, help="Append to an existing --export file instead of replacing it.")
@click.option("--export-images", type=click.Choice(["embed", "files"]), default="embed", show_default=True,
              help="Export images as base64 PNG in the rows, or as files beside the export.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1), help="Images per forward pass.")
def generate_cmd(caption: str | None, num_images: int, seed: int | None, out_dir: str, model: str | None,
                 revision: str | None, stages: int | None, device: str, precision: str, exact: bool, backend: str,
                 onnx_dir: str | None, truncation: float | None, candidates: int | None,
                 captions_file: str | None,
                 export_path: str | None, append: bool, export_images: str, batch_size: int) -> None:
    """Generate images for CAPTION (or every line of --captions FILE).

    Writes <out>/<slug>_<seed>_<size>.png for every stage and <slug>_<seed>_attention.png.
    """
    from tqdm import tqdm

    from ..inference.export import ExportError, export_format, rows_from_output, write_export
    from ..text import UnknownWordsError

    items = _read_captions(caption, captions_file)
    if export_path is not None:
        try:
            export_format(export_path)
        except ExportError as exc:
            raise click.BadParameter(str(exc), param_hint="--export") from None
    pipe = load_pipeline(model, device, precision, backend, onnx_dir, exact, revision, truncation,
                         candidates)
    if stages is not None and stages > pipe.num_stages:
        raise click.BadParameter(f"{pipe.name} has {pipe.num_stages} stage(s), got {stages}", param_hint="--stages")
    for text, where in items:  # fail before generating anything
        try:
            pipe.encode_captions([text])
        except UnknownWordsError as exc:
            raise CaptionError(f"{where}: {exc}") from None
    base_seed = secrets.randbelow(2**31 - 1) if seed is None else seed
    per_call = max(1, batch_size // num_images)
    out = Path(out_dir)
    names, rows = _Names(), []
    bar = tqdm(total=len(items), unit="caption", file=sys.stderr, disable=captions_file is None)
    echo: Callable[[str], object] = bar.write if captions_file is not None else click.echo
    try:
        for k in range(0, len(items), per_call):
            chunk = [text for text, _ in items[k:k + per_call]]
            output = pipe(chunk, num_images=num_images, seed=base_seed, num_stages=stages, batch_size=batch_size)
            written = _save_images(output, out, names)
            for c in range(len(chunk)):
                first = c * num_images
                for paths in written[first:first + num_images]:
                    for path in paths:
                        echo(str(path))
                encoded = output.captions[first]
                if encoded.dropped:
                    click.echo(f"warning: {items[k + c][1]}: dropped unknown word(s): {', '.join(encoded.dropped)}",
                               err=True)
                echo(_summary(output, first, num_images))
            if export_path is not None:
                rows += rows_from_output(output, extra_settings={"batch_size": batch_size})
            bar.update(len(chunk))
    finally:
        bar.close()
    if export_path is not None:
        try:
            path = write_export(export_path, rows, append=append, image_files=export_images == "files")
        except (ExportError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"exported {len(rows)} row(s) to {path}")
    click.echo(f"wrote {len(items) * num_images} image(s) for {len(items)} caption(s) to {out}")


@main.command("export-onnx")
@model_options()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--opset", default=17, show_default=True, type=click.IntRange(min=17), help="ONNX opset.")
def export_onnx_cmd(model: str | None, revision: str | None, out_dir: str, opset: int) -> None:
    """Export the text encoder and the generator to ONNX (dynamic batch and caption length)."""
    from ..hub import load_pretrained
    from ..inference.onnx import export_onnx
    from ..inference.pipeline import bundled_model_path

    try:
        folder = bundled_model_path() if model is None else model
        path = export_onnx(load_pretrained(folder, revision=revision), out_dir, opset=opset)
    except FileNotFoundError as exc:
        raise click.ClickException(f"{exc}{'; pass --model PATH' if model is None else ''}") from None
    except (ValueError, ImportError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path} (text_encoder.onnx, generator.onnx, onnx.json)")


@main.command("show-export")
@click.argument("export_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the PNGs.")
def show_export_cmd(export_file: str, out_dir: str) -> None:
    """Decode the images of an export (.csv, .jsonl, .parquet) back to PNG files."""
    from ..inference.export import ExportError, read_export, slugify
    from ..viz import save_png

    try:
        rows = read_export(export_file)
        for number, row in enumerate(rows, 1):
            path = Path(out_dir) / f"{number:05d}_{slugify(row.caption)}_{row.seed}_{row.stage}.png"
            save_png(row.image(), path)
            click.echo(f"{path}  {row.caption!r} seed {row.seed}")
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"decoded {len(rows)} image(s) to {out_dir}")
