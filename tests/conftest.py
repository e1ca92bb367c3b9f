"""Shared test helpers: where the shared golden files and real data live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATTNGAN_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden"
DATA = SHARED / "data"
CUB = DATA / "cub_birds_001-005"
ANIME = DATA / "anime_faces"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (small CPU work runs faster so when the cores are shared);
    modules ask for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def require(path: Path) -> Path:
    """Skip the calling test, saying why, when a shared file is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared golden files and data live beside the project)")
    return path


def in_ci() -> bool:
    """Whether the tests run under CI (environment ``CI`` set to true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def require_golden(path: Path) -> Path:
    """A reference file the parity tests need: absent, the calling test is skipped on a
    developer's machine but fails under CI, so parity cannot silently go untested there."""
    if not path.exists() and in_ci():
        pytest.fail(f"{path} is absent, and CI must run the parity tests: lay the shared golden files "
                    f"beside the project (or point ATTNGAN_SHARED at them)", pytrace=False)
    return require(path)


TINY_WORDS = ("a small large red green blue yellow circle square triangle on the left right top bottom center "
              "of image big tiny").split()


def make_tiny_bundle(num_stages: int = 3, seed: int = 0):
    """A randomly initialised small model (16 -> 32 -> 64 px) for fast tests."""
    import torch

    from attngan.config import GeneratorConfig, ImageEncoderConfig, ModelConfig, TextEncoderConfig
    from attngan.hub import build_bundle
    from attngan.text import PAD_TOKEN, Vocabulary

    torch.manual_seed(seed)
    vocab = Vocabulary([PAD_TOKEN, *TINY_WORDS])
    config = ModelConfig(
        text_encoder=TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=16, hidden_dim=16, max_words=12),
        generator=GeneratorConfig(text_dim=16, condition_dim=8, noise_dim=8, channels=8, num_residual=1,
                                  num_stages=num_stages, first_stage_size=16),
        image_encoder=ImageEncoderConfig(kind="light", embedding_dim=16, image_size=64, light_channels=8),
        name="tiny-test",
    )
    return build_bundle(config, vocab, {"note": "random weights for tests"})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a saved tiny random model."""
    from attngan.hub import save_pretrained

    return save_pretrained(make_tiny_bundle(), tmp_path_factory.mktemp("models") / "tiny")


def random_damsm(path: Path, vocab=None) -> Path:  # noqa: ANN001
    """A DAMSM folder with random encoders for the tiny training configurations (what the GAN loop
    needs of one, at no training cost); ``vocab`` defaults to the shapes vocabulary."""
    import torch

    from attngan.config import ImageEncoderConfig, TextEncoderConfig
    from attngan.data.shapes import shapes_vocabulary
    from attngan.hub import DAMSMEncoders, save_damsm
    from attngan.models.image_encoder import build_image_encoder
    from attngan.models.text_encoder import TextEncoder

    torch.manual_seed(0)
    vocab = vocab or shapes_vocabulary()
    te = TextEncoder(TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=16, hidden_dim=16, dropout=0.0))
    ie = build_image_encoder(ImageEncoderConfig(kind="light", embedding_dim=16, image_size=32, light_channels=8))
    return save_damsm(DAMSMEncoders(te.eval(), ie.eval(), vocab, {"steps": 0}), path)


@pytest.fixture(scope="session")
def random_damsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DAMSM folder with random encoders (see :func:`random_damsm`)."""
    return random_damsm(tmp_path_factory.mktemp("damsm") / "damsm")


def model_folder_with(source: Path, folder: Path, **metadata: object) -> Path:
    """A copy of the model folder ``source`` at ``folder`` whose config.json's metadata has
    ``metadata`` set as written, good or bad (edited by hand: nothing checks it on the way)."""
    import json
    import shutil

    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config["metadata"].update(metadata)
    (folder / "config.json").write_text(json.dumps(config))
    return folder
