"""Counterfactual captions (hard negatives): every shapes counterfactual is a true negative that
names no held-out pair; word swaps for other data; the DAMSM and discriminator losses with them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from attngan.config import ConfigError
from attngan.data import DataSpec, build_from_options, collate
from attngan.data.counterfactual import Counterfactuals, WordSwap
from attngan.data.shapes import Scene, ShapesDataset, random_scene
from attngan.data.shapes_counterfactuals import (
    COUNTERFACTUAL_KINDS,
    all_counterfactuals,
    sample_counterfactuals,
)
from attngan.losses.damsm import (
    HardNegatives,
    paired_word_image_similarity,
    sentence_loss,
    word_image_similarity,
    words_loss,
)
from attngan.losses.gan import discriminator_loss
from attngan.text import PAD_TOKEN, Vocabulary, tokenize
from attngan.training.distributed import DistInfo
from attngan.training.gan import GANTrainer
from attngan.training.options import resolve_config

from .conftest import random_damsm

pytestmark = pytest.mark.usefixtures("one_thread")


def _changes(a, b) -> list[tuple[int, str]]:  # noqa: ANN001
    return [(k, f) for k, (x, y) in enumerate(zip(a, b, strict=True))
            for f in ("shape", "color", "size", "position") if getattr(x, f) != getattr(y, f)]


def test_every_shapes_counterfactual_changes_one_thing_and_is_a_true_negative() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        scene = random_scene(rng, pairs="seen")
        assert all_counterfactuals(scene, "background") == []  # a caption that does not name it
        for other in all_counterfactuals(scene, "background", names_background=True):
            assert other.objects == scene.objects and other.background != scene.background
        for kind in (k for k in COUNTERFACTUAL_KINDS if k != "background"):
            for other in all_counterfactuals(scene, kind, names_background=True):
                assert other.background == scene.background
                objects = other.objects
                changes = _changes(scene.objects, objects)
                assert changes, "a counterfactual must differ from the scene"
                if kind == "exchange":  # one attribute, exchanged between the two objects
                    assert [k for k, _ in changes] == [0, 1] and changes[0][1] == changes[1][1]
                elif kind == "swap":  # the two objects at each other's places, nothing else changed
                    assert changes == [(0, "position"), (1, "position")]
                    assert [o.position for o in objects] == [o.position for o in scene.objects][::-1]
                else:
                    assert changes == [(changes[0][0], kind)]
                assert len({o.position for o in objects}) == len(objects)  # never on the other one's cell
                assert not any(o.unseen_pair for o in objects)  # the unseen split stays unseen
                assert sorted(o.code for o in objects) != sorted(o.code for o in scene.objects)


def test_sampled_counterfactuals_are_distinct_and_follow_the_weights() -> None:
    rng = np.random.default_rng(1)
    kinds = {k: 0 for k in COUNTERFACTUAL_KINDS}
    for _ in range(200):
        scene = random_scene(rng, pairs="seen", min_objects=2)
        found = sample_counterfactuals(scene, 3, rng)
        assert len(found) == 3 and len(set(found)) == 3
        assert all(other.background == scene.background for other in found)
        for other in found:
            changes = _changes(scene.objects, other.objects)
            kinds["exchange" if len(changes) == 2 and changes[0][0] != changes[1][0] else changes[0][1]] += 1
    assert kinds["shape"] > 2 * max(v for k, v in kinds.items() if k != "shape")  # half of them change the shape
    only_colour = sample_counterfactuals(random_scene(rng), 2, rng, {"color": 1.0})
    assert all(_changes(a.objects, b.objects) for a, b in zip(only_colour, only_colour[1:]))
    scenes = [random_scene(rng, pairs="seen") for _ in range(100)]
    moved = sum(other.background != scene.background
                for scene in scenes for other in sample_counterfactuals(scene, 3, rng, names_background=True))
    assert 0 < moved < 150  # a caption that names the background: its change is one kind among six


def test_swapped_places_are_off_by_default_and_drawn_when_weighted() -> None:
    rng = np.random.default_rng(2)
    only_swap = {k: 0.0 for k in COUNTERFACTUAL_KINDS} | {"swap": 1.0}
    for _ in range(100):
        scene = random_scene(rng, pairs="seen", min_objects=2)
        for other in sample_counterfactuals(scene, 3, rng):  # the default mix never swaps
            assert _changes(scene.objects, other.objects) != [(0, "position"), (1, "position")]
        swapped = sample_counterfactuals(scene, 3, rng, only_swap)
        a, b = scene.objects
        if (a.shape, a.color, a.size) == (b.shape, b.color, b.size):
            assert swapped == []  # the same description: no negative
        else:
            assert len(swapped) == 1 and [o.position for o in swapped[0].objects] == [b.position, a.position]
    assert sample_counterfactuals(random_scene(rng, max_objects=1), 3, rng, only_swap) == []
    # as a data option: the given weights replace those kinds' defaults
    spec = DataSpec(kind="shapes", extra={"size": 60}, counterfactuals=1, counterfactual_kinds=only_swap)
    data = build_from_options(spec, (32,), 18, seed=0)
    swaps = 0
    for index in range(60):
        item, scene = data[index], data.dataset.scene(index)
        if int(item["negative_lengths"][0]) == 0:
            continue
        caption = data.dataset.caption_text(index, item["caption_index"])
        negative = " ".join(data.vocab.words[t] for t in item["negatives"][0, : int(item["negative_lengths"][0])].tolist())
        other = Scene((dataclasses.replace(scene.objects[0], position=scene.objects[1].position),
                       dataclasses.replace(scene.objects[1], position=scene.objects[0].position)), scene.background)
        assert negative == " ".join(tokenize(data.dataset.caption_with(index, item["caption_index"], other)))
        assert negative != " ".join(tokenize(caption))
        swaps += 1
    assert swaps > 10


@pytest.mark.parametrize(("kinds", "kind", "message"), [
    ({"swop": 1}, "shapes", "unknown kind 'swop'"),
    ({"swap": -1}, "shapes", "must be a number >= 0"),
    ({"swap": True}, "shapes", "must be a number >= 0"),
    ({k: 0 for k in COUNTERFACTUAL_KINDS}, "shapes", "every kind has weight 0"),
    ({"swap": 1}, "cub", "only the shapes data set"),
])
def test_counterfactual_kinds_are_checked(kinds: dict, kind: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        DataSpec(kind=kind, root=None if kind == "shapes" else "somewhere", counterfactual_kinds=kinds)
    assert "data.counterfactual_kinds" in str(info.value)


def test_counterfactual_items_keep_the_caption_template_and_are_reproducible() -> None:
    spec = DataSpec(kind="shapes", extra={"size": 40}, counterfactuals=3)
    data = build_from_options(spec, (32,), 18, seed=0)
    assert isinstance(data, Counterfactuals) and isinstance(data.dataset, ShapesDataset)
    for index in range(10):
        item = data[index]
        own = item["tokens"][: item["length"]].tolist()
        for k in range(3):
            n = int(item["negative_lengths"][k])
            negative = item["negatives"][k, :n].tolist()
            if n == len(own):  # same template and synonyms: same words but the changed ones
                assert 1 <= sum(a != b for a, b in zip(own, negative, strict=True)) <= 4
            else:  # a background of one word <-> one of two ("black" <-> "dark gray")
                assert abs(n - len(own)) == 1 and "background" in data.dataset.caption_text(index, item["caption_index"])
    again = build_from_options(spec, (32,), 18, seed=0)[3]
    assert torch.equal(again["negatives"], data[3]["negatives"])
    batch = collate([data[i] for i in range(4)])
    assert batch["negatives"].shape == (4, 3, 18) and batch["negative_lengths"].shape == (4, 3)
    # evaluation never reads them
    assert "negatives" not in build_from_options(spec, (32,), 18, train=False)[0]


def test_word_swap_replaces_one_word_within_its_class() -> None:
    words = "this bird has red wings and a blue crown belly".split()
    vocab = Vocabulary([PAD_TOKEN, *dict.fromkeys(words)])
    swap = WordSwap(vocab, {"part": ["wings", "crown", "belly", "tail"]})
    assert set(swap.classes) == {"color", "part"}  # "tail" is not in the vocabulary: ignored
    ids = [vocab.index[w] for w in tokenize("this bird has red wings")]
    found = swap.sample(ids, 5, np.random.default_rng(0))
    texts = {" ".join(vocab.words[i] for i in f) for f in found}
    assert texts == {"this bird has blue wings", "this bird has red crown", "this bird has red belly"}
    with pytest.raises(ValueError, match="word class 'part'"):
        WordSwap(vocab, {"part": "wings"})


def test_paired_similarity_is_the_diagonal_of_all_pairs() -> None:
    torch.manual_seed(0)
    regions, words = torch.randn(5, 8, 3, 3), torch.randn(5, 8, 6)
    lengths = torch.tensor([6, 2, 4, 1, 5])
    words = words * (torch.arange(6)[None, :] < lengths[:, None])[:, None, :]
    full, _ = word_image_similarity(regions, words, lengths, 4.0, 5.0)
    paired = paired_word_image_similarity(regions, words, lengths, 4.0, 5.0)
    assert torch.allclose(paired, full.diagonal(), atol=1e-5)


def test_hard_negatives_join_only_the_image_to_caption_terms() -> None:
    torch.manual_seed(0)
    b, k, d, t = 4, 2, 8, 5
    regions, codes = torch.randn(b, d, 3, 3), torch.randn(b, d)
    words, sentence, lengths = torch.randn(b, d, t), torch.randn(b, d), torch.full((b,), t)
    empty = HardNegatives(torch.randn(b, k, d, t), torch.randn(b, k, d), torch.zeros(b, k, dtype=torch.int64))
    base_w, base_s = words_loss(regions, words, lengths, None)[:2], sentence_loss(codes, sentence, None)
    with_empty_w = words_loss(regions, words, lengths, None, negatives=empty)[:2]
    assert all(torch.allclose(x, y) for x, y in zip(base_w, with_empty_w, strict=True))  # empty slots ignored
    # a counterfactual as close to the image as its own caption: the image->caption loss rises
    twin = HardNegatives(words[:, None].expand(b, k, d, t).clone(), sentence[:, None].expand(b, k, d).clone(),
                         torch.full((b, k), t))
    w0, w1, _ = words_loss(regions, words, lengths, None, negatives=twin)
    s0, s1 = sentence_loss(codes, sentence, None, negatives=twin)
    assert w0 > base_w[0] and s0 > base_s[0]
    assert torch.allclose(w1, base_w[1]) and torch.allclose(s1, base_s[1])  # caption->image unchanged
    # exactly: k twins of the own caption add k copies of its logit to each row
    sim, _ = word_image_similarity(regions, words, lengths, 4.0, 5.0)
    rows = torch.cat((sim * 10, (sim.diagonal() * 10)[:, None].expand(b, k)), dim=1)
    assert torch.allclose(w0, torch.nn.functional.cross_entropy(rows, torch.arange(b)), atol=1e-5)


def test_discriminator_hard_term_is_averaged_with_the_mismatched_term() -> None:
    real, fake, wrong, hard = torch.randn(4), torch.randn(4), torch.randn(3), torch.randn(8)
    for kind in ("bce", "hinge"):
        base = discriminator_loss(real, fake, wrong, kind=kind)
        both = discriminator_loss(real, fake, wrong, kind=kind, cond_hard=hard)
        only_hard = discriminator_loss(real, fake, hard, kind=kind)
        assert torch.allclose(both, (base + only_hard) / 2)  # real + (fake + (wrong + hard) / 2) / 2


def test_gan_step_with_counterfactual_captions(tmp_path: Path) -> None:
    damsm = random_damsm(tmp_path / "damsm")
    sets = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "discriminator.channels=8",
            "data.extra={size: 16}", "data.counterfactuals=2", "run.batch_size=4", "run.sample_every=0",
            "run.precision=fp32", f"damsm={damsm}", f"run.out_dir={tmp_path / 'run'}"]
    trainer = GANTrainer(resolve_config("gan", "shapes", sets), DistInfo())
    batch = collate([trainer.data[i] for i in range(4)])
    assert batch["negatives"].shape[:2] == (4, 2)
    with_hard = trainer.train_step(batch)
    off = resolve_config("gan", "shapes", sets + ["hard_negatives.discriminator=false", "hard_negatives.damsm=false"])
    plain = GANTrainer(off, DistInfo()).train_step(batch)
    assert all(np.isfinite(v) for v in with_hard.values())
    assert with_hard["loss_damsm_w"] != plain["loss_damsm_w"] and with_hard["loss_d0"] != plain["loss_d0"]


def test_a_data_set_without_swappable_words_gets_empty_slots(caplog: pytest.LogCaptureFixture) -> None:
    class Plain:
        vocab = Vocabulary([PAD_TOKEN, "a", "bird", "with", "wings"])
        max_words = 6

        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> dict:
            return {"tokens": torch.tensor([1, 2, 3, 4, 0, 0]), "length": 4, "caption_index": 0}

    with caplog.at_level("WARNING"):
        data = Counterfactuals(Plain(), 2)
    assert "no word class" in caplog.text
    item = data[1]
    assert item["negatives"].shape == (2, 6) and item["negative_lengths"].tolist() == [0, 0]
