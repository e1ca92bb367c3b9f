"""The birds preset, scaled down for a CPU, trains end to end on the real (partial) CUB data."""

from __future__ import annotations

from pathlib import Path

import pytest

from attngan.hub import load_pretrained
from attngan.training.damsm import train_damsm
from attngan.training.gan import train_gan
from attngan.training.options import resolve_config

from .conftest import CUB, require

SCALED = ["run.batch_size=4", "run.max_steps=2", "run.log_every=1", "run.checkpoint_every=2", "run.threads=2",
          "data.missing=skip"]


@pytest.mark.slow
def test_birds_preset_scaled_down_runs_end_to_end(tmp_path: Path) -> None:
    root = require(CUB)
    damsm = resolve_config("damsm", "birds", SCALED + [
        f"data.root={root}", f"run.out_dir={tmp_path / 'damsm'}", "text_encoder.word_embedding_dim=32",
        "text_encoder.hidden_dim=32", "image_encoder.kind=light", "image_encoder.image_size=64",
        "image_encoder.light_channels=8", "image_encoder.embedding_dim=32"])
    damsm_dir = train_damsm(damsm)
    gan = resolve_config("gan", "birds", SCALED + [
        f"data.root={root}", f"run.out_dir={tmp_path / 'gan'}", f"damsm={damsm_dir}", "generator.channels=4",
        "generator.condition_dim=8", "generator.noise_dim=8", "generator.num_residual=1", "discriminator.channels=4",
        "run.sample_every=2"])
    model = train_gan(gan)
    bundle = load_pretrained(model)
    assert bundle.config.generator.image_sizes == (64, 128, 256)
    assert len(bundle.vocab) > 100  # built from the CUB captions present
    assert list((tmp_path / "gan" / "samples").glob("*.png"))
