"""Rounded negatives (``data.rounded_negatives``): each shapes training scene drawn again with smoothed
silhouettes, a hard-negative image of its caption in the DAMSM losses' caption->image terms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attngan.config import ConfigError
from attngan.data import DataSpec, build_from_options, collate
from attngan.data.shapes import Scene, ShapeObject, ShapesDataset, render_shapes
from attngan.data.shapes_rounded import RoundedNegatives, render_rounded, rounded_difference
from attngan.losses.damsm import (
    ImageNegatives,
    paired_word_image_similarity,
    sentence_loss,
    word_image_similarity,
    words_loss,
)
from attngan.losses.gan import discriminator_loss
from attngan.training.damsm import DAMSMTrainer
from attngan.training.distributed import DistInfo
from attngan.training.gan import GANTrainer
from attngan.training.options import resolve_config

from .conftest import random_damsm
from .test_training import TINY_DAMSM

pytestmark = pytest.mark.usefixtures("one_thread")


def _scene(*shapes: str) -> Scene:
    places = ("left", "right")
    return Scene(tuple(ShapeObject(s, "red", "large", p) for s, p in zip(shapes, places)), "light gray")


def test_rounding_changes_outlines_only() -> None:
    star = _scene("star", "square")
    assert np.array_equal(np.asarray(render_rounded(star, 64, 0.0)), np.asarray(render_shapes(star.objects,
                                                                                           star.background, 64)))
    circles = _scene("circle", "circle")
    assert rounded_difference(circles, 64, 0.2) == 0.0  # a circle stays a circle
    assert rounded_difference(star, 64, 0.2) > 0.5
    plain, rounded = np.asarray(render_shapes(star.objects, star.background, 64)), np.asarray(render_rounded(star, 64, 0.2))
    # the same colours on the same background: only the outlines moved
    colours = lambda a: {tuple(p) for p in a.reshape(-1, 3) if p.max() - p.min() > 100}  # noqa: E731
    assert colours(rounded) and colours(rounded) <= colours(plain) | {(220, 30, 30)}
    assert (plain[:, 32:] != rounded[:, 32:]).any()  # the square's corners too
    with pytest.raises(ValueError, match="strength"):
        render_rounded(star, 64, -0.1)


def test_items_and_batches_carry_the_rounded_images() -> None:
    data = RoundedNegatives(ShapesDataset("train", image_sizes=(32, 64), size=12), 0.2)
    batch = collate([data[i] for i in range(12)])
    assert batch["rounded_images"].shape == (12, 3, 64, 64) and batch["rounded_valid"].dtype == torch.bool
    for i in range(12):
        scene = data.shapes.scene(i)
        assert bool(batch["rounded_valid"][i]) == any(o.shape != "circle" for o in scene.objects)
    expected = np.asarray(render_rounded(data.shapes.scene(3), 64, 0.2), dtype=np.float32) / 127.5 - 1
    assert np.allclose(data[3]["rounded_images"].permute(1, 2, 0).numpy(), expected, atol=1e-6)  # the scene's own
    with pytest.raises(ValueError, match="shapes data set"):
        RoundedNegatives([1, 2, 3], 0.2)


def test_only_training_data_of_the_shapes_set_gets_them() -> None:
    spec = DataSpec("shapes", extra={"size": 8}, counterfactuals=2, rounded_negatives=0.2)
    train = build_from_options(spec, (64,), 18, train=True)
    item = train[0]
    assert "rounded_images" in item and "negatives" in item  # under the counterfactual captions too
    assert "rounded_images" not in build_from_options(spec, (64,), 18, split="validation", train=False)[0]
    for bad in (-0.1, 1.5, True, "0.2"):
        with pytest.raises(ConfigError, match="data.rounded_negatives"):
            DataSpec("shapes", rounded_negatives=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="only the shapes data set"):
        DataSpec("cub", root="x", rounded_negatives=0.2)


def test_image_negatives_join_only_the_caption_to_image_terms() -> None:
    torch.manual_seed(0)
    b, d, t = 4, 8, 5
    regions, codes = torch.randn(b, d, 3, 3), torch.randn(b, d)
    words, sentence, lengths = torch.randn(b, d, t), torch.randn(b, d), torch.full((b,), t)
    base_w, base_s = words_loss(regions, words, lengths, None)[:2], sentence_loss(codes, sentence, None)
    none = ImageNegatives(torch.randn(b, d, 3, 3), torch.randn(b, d), torch.zeros(b, dtype=torch.bool))
    assert all(torch.allclose(x, y) for x, y in zip(base_w, words_loss(regions, words, lengths, None,
                                                                       image_negatives=none)[:2], strict=True))
    neg = ImageNegatives(torch.randn(b, d, 3, 3), torch.randn(b, d), torch.tensor([True, False, True, True]))
    w0, w1, _ = words_loss(regions, words, lengths, None, image_negatives=neg)
    s0, s1 = sentence_loss(codes, sentence, None, image_negatives=neg)
    assert torch.allclose(w0, base_w[0]) and torch.allclose(s0, base_s[0])  # image->caption unchanged
    sim, _ = word_image_similarity(regions, words, lengths, 4.0, 5.0)
    extra = paired_word_image_similarity(neg.regions, words, lengths, 4.0, 5.0) * 10
    columns = torch.cat((sim.t() * 10, extra.masked_fill(~neg.valid, float("-inf"))[:, None]), dim=1)
    assert torch.allclose(w1, torch.nn.functional.cross_entropy(columns, torch.arange(b)), atol=1e-5)
    cos = torch.nn.functional.cosine_similarity
    scores = cos(codes[:, None], sentence[None], dim=-1) * 10
    extra_s = (cos(sentence, neg.codes, dim=-1) * 10).masked_fill(~neg.valid, float("-inf"))
    columns_s = torch.cat((scores.t(), extra_s[:, None]), dim=1)
    assert torch.allclose(s1, torch.nn.functional.cross_entropy(columns_s, torch.arange(b)), atol=1e-5)


def test_a_damsm_step_with_rounded_negatives(tmp_path: Path) -> None:
    sets = [*TINY_DAMSM, "data.rounded_negatives=0.2", "data.counterfactuals=2", f"run.out_dir={tmp_path}"]
    trainer = DAMSMTrainer(resolve_config("damsm", "shapes", sets), DistInfo())
    batch = collate([trainer.data[i] for i in range(8)])
    assert batch["rounded_images"].shape == (8, 3, 32, 32)
    logs = trainer.train_step(batch)
    assert all(np.isfinite(v) for v in logs.values())


def test_the_discriminators_rounded_term_joins_the_mismatched_kinds() -> None:
    real, fake, wrong, hard, rounded = (torch.randn(n) for n in (4, 4, 3, 8, 3))
    for kind in ("bce", "hinge"):
        only = {name: discriminator_loss(real, fake, x, kind=kind) for name, x in
                (("wrong", wrong), ("hard", hard), ("rounded", rounded))}
        base = discriminator_loss(real, fake, wrong, kind=kind, cond_rounded=torch.empty(0))
        assert torch.equal(base, only["wrong"])  # no valid rounded image: the term is the original's
        two = discriminator_loss(real, fake, wrong, kind=kind, cond_rounded=rounded)
        assert torch.allclose(two, (only["wrong"] + only["rounded"]) / 2)  # fake and mismatched halves add
        three = discriminator_loss(real, fake, wrong, kind=kind, cond_hard=hard, cond_rounded=rounded)
        assert torch.allclose(three, sum(only.values()) / 3, atol=1e-6)


def test_a_gan_step_gives_the_last_discriminator_rounded_pairs(tmp_path: Path) -> None:
    """Same batch and seed with and without rounded images: the first stage's discriminator loss is
    the same, the last one's has the (rounded image, own caption) pairs in its mismatched term."""
    damsm = random_damsm(tmp_path / "damsm")
    sets = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "generator.num_stages=2",
            "discriminator.channels=8", "data.extra={size: 16}", "run.batch_size=4", "run.sample_every=0",
            "run.precision=fp32", f"damsm={damsm}", f"run.out_dir={tmp_path / 'run'}"]
    trainer = GANTrainer(resolve_config("gan", "shapes", [*sets, "data.rounded_negatives=0.2"]), DistInfo())
    items = [i for i in range(len(trainer.data)) if trainer.data[i]["rounded_valid"]][:4]
    batch = collate([trainer.data[i] for i in items])
    assert batch["rounded_images"].shape == batch["images"][-1].shape
    with_rounded = trainer.train_step(batch)
    plain = GANTrainer(resolve_config("gan", "shapes", sets), DistInfo()).train_step(
        {k: v for k, v in batch.items() if not k.startswith("rounded_")})
    assert all(np.isfinite(v) for v in with_rounded.values())
    assert with_rounded["loss_d0"] == pytest.approx(plain["loss_d0"], abs=1e-6)
    assert with_rounded["loss_d1"] != pytest.approx(plain["loss_d1"], abs=1e-4)
