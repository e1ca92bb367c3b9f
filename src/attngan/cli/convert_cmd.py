"""``attngan convert``: original AttnGAN checkpoints -> an attngan model folder."""

from __future__ import annotations

from pathlib import Path

import click

from .group import main


@main.command("convert")
@click.option("--generator", "generator_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Original netG_epoch_*.pth.")
@click.option("--text-encoder", "text_encoder_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Original text_encoder*.pth (DAMSM).")
@click.option("--captions", "captions_pickle", type=click.Path(exists=True, dir_okay=False),
              help="Original captions.pickle holding the vocabulary.")
@click.option("--vocab", "vocab_json", type=click.Path(exists=True, dir_okay=False),
              help="A vocab.json instead of captions.pickle.")
@click.option("--image-encoder", "image_encoder_path", type=click.Path(exists=True, dir_okay=False),
              help="Original image_encoder*.pth (optional; needed for R-precision).")
@click.option("--max-words", default=18, show_default=True, help="Words kept per caption at inference.")
@click.option("--name", default="attngan-converted", show_default=True, help="Model name stored in config.json.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output model folder.")
def convert(generator_path: str, text_encoder_path: str, captions_pickle: str | None, vocab_json: str | None,
            image_encoder_path: str | None, max_words: int, name: str, out_dir: str) -> None:
    """Convert original-layout checkpoints (config.json + model.safetensors + vocab.json)."""
    from ..hub.convert import convert_original
    from ..text import Vocabulary

    if (captions_pickle is None) == (vocab_json is None):
        raise click.UsageError("give exactly one of --captions (captions.pickle) or --vocab (vocab.json)")
    vocab = Vocabulary.load(vocab_json) if vocab_json else None
    try:
        path = convert_original(generator_path, text_encoder_path, out_dir, captions_pickle=captions_pickle,
                                vocab=vocab, image_encoder_path=image_encoder_path, max_words=max_words, name=name)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {Path(path)}")
