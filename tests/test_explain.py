"""The explanation of a caption (``attngan.inference.explain``, ``attngan explain``, ``POST /v1/explain``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attngan.cli import main
from attngan.inference.explain import explain
from attngan.inference.pipeline import AttnGANPipeline
from attngan.losses.damsm import word_image_similarity
from attngan.viz import to_pil

from .conftest import make_tiny_bundle

CAPTION = "a small red circle on the left"


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir: Path) -> AttnGANPipeline:
    return AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32")


def test_a_generated_image_is_explained_as_the_damsm_losses_score_it(pipeline: AttnGANPipeline) -> None:
    out = pipeline(CAPTION, seed=3, return_intermediates=True)
    explanation = explain(pipeline, CAPTION, seed=3)
    assert explanation.seed == 3 and torch.equal(explanation.image, out.images[-1][0])
    tokens = out.captions[0].tokens
    assert explanation.text.tokens == tokens and explanation.text.word_features.shape == (16, len(tokens))
    assert explanation.conditioning is not None and explanation.conditioning.noise_dim == 8
    assert torch.allclose(explanation.conditioning.sigma, torch.exp(0.5 * out.intermediates["logvar"][0]))
    match = explanation.damsm
    assert match is not None and match.attention.shape == (len(tokens), match.region_size, match.region_size)
    assert torch.allclose(match.attention.sum(dim=(1, 2)), torch.ones(len(tokens)), atol=1e-5)
    # the same figures as the DAMSM loss's similarity of this image and caption, in a batch of one
    encoder, gamma = pipeline.bundle.image_encoder, pipeline.config.damsm
    with torch.inference_mode():
        regions, code = encoder(out.images[-1][:1])
    words = out.intermediates["word_features"][:1, :, : len(tokens)]
    score, _ = word_image_similarity(regions, words, torch.tensor([len(tokens)]), gamma.gamma1, gamma.gamma2)
    assert match.word_region_score == pytest.approx(float(score[0, 0]), abs=1e-5)
    cosine = torch.nn.functional.cosine_similarity(code, out.intermediates["sentence_features"][:1])
    assert match.sentence_image_cosine == pytest.approx(float(cosine[0]), abs=1e-5)


def test_cli_explains_a_given_image_and_draws_it(pipeline: AttnGANPipeline, tiny_model_dir: Path,
                                                  tmp_path: Path) -> None:
    generated = explain(pipeline, CAPTION, seed=5)
    image = tmp_path / "image.png"
    to_pil(generated.image[None])[0].resize((100, 100)).save(image)  # any size: resized to the model's 64 px
    result = CliRunner().invoke(main, ["explain", CAPTION, "--image", str(image), "--model", str(tiny_model_dir),
                                       "--precision", "fp32", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"caption {CAPTION!r}: 7 word(s) used") and f"image: {image}, 64px" in lines[1]
    assert not any(line.startswith("conditioning") for line in lines)  # not a generated image
    damsm = next(line for line in lines if line.startswith("DAMSM: sentence-image cosine"))
    cosine = float(damsm.split("cosine ")[1].split(",")[0])
    assert generated.damsm is not None and cosine == pytest.approx(generated.damsm.sentence_image_cosine, abs=0.05)
    assert sum(line.startswith("  red: attends most to region") for line in lines) == 1
    for name in ("image.png", "words.png", "damsm.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    unknown = CliRunner().invoke(main, ["explain", "xyzzy", "--model", str(tiny_model_dir), "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "xyzzy" in unknown.output
    missing = CliRunner().invoke(main, ["explain", CAPTION, "--image", str(tmp_path / "absent.png"),
                                        "--model", str(tiny_model_dir), "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "absent.png" in missing.output


def test_without_an_image_encoder_there_is_no_damsm_part(tmp_path: Path) -> None:
    from dataclasses import replace

    from attngan.hub import ModelBundle

    bundle = make_tiny_bundle()
    bundle = ModelBundle(replace(bundle.config, image_encoder=None), bundle.vocab, bundle.text_encoder,
                         bundle.generator, None, bundle.metadata)
    explanation = explain(AttnGANPipeline(bundle, precision="fp32"), CAPTION, seed=0)
    assert explanation.damsm is None and explanation.conditioning is not None
