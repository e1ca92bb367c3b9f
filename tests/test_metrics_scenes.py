"""Per-object scores of shapes scenes: the slot network, targets, scoring rules, summaries, table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attngan.data.common import to_tensor
from attngan.data.shapes import BACKGROUNDS, POSITIONS, Scene, ShapeObject, ShapesDataset, render_shapes
from attngan.metrics import SampleBatch, get_metric, load_classifier, save_classifier
from attngan.metrics.classifier import AttributeClassifier, ClassifierConfig, train_attribute_classifier
from attngan.metrics.eval_data import _Stacked
from attngan.metrics.scenes import (
    SCENE_CELLS,
    SCENE_HEAD_NAMES,
    SCENE_HEAD_VALUES,
    SceneHits,
    is_scene_classifier,
    place_pairing,
    scene_hits,
    scene_table,
    scene_targets,
    scene_training_data,
    summarise_scene_hits,
)
from attngan.metrics.slot_network import SlotNetwork, crop, estimate_background, silhouette

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

SLOTS = {"arch": "slots", "cells": SCENE_CELLS}


def image(scene: Scene, size: int = 64) -> torch.Tensor:
    return to_tensor(np.asarray(render_shapes(scene.objects, scene.background, size)))


def test_scene_targets_fill_the_slots_of_the_objects() -> None:
    scene = Scene((ShapeObject("star", "red", "large", "top"), ShapeObject("circle", "blue", "small", "left")),
                  "dark gray")
    targets = scene_targets(scene)
    assert len(targets) == len(SCENE_HEAD_NAMES) == len(SCENE_HEAD_VALUES) == 21
    assert targets[0] == BACKGROUNDS.index("dark gray")
    slot = {name: value for name, value in zip(SCENE_HEAD_NAMES, targets)}
    assert [slot[f"top_{f}"] for f in ("occupied", "shape", "color", "size")] == [1, 3, 0, 1]
    assert [slot[f"left_{f}"] for f in ("occupied", "shape", "color", "size")] == [1, 0, 2, 0]
    assert [slot[f"center_{f}"] for f in ("occupied", "shape", "color", "size")] == [0, -1, -1, -1]


def test_background_silhouette_and_crops() -> None:
    scene = Scene((ShapeObject("square", "yellow", "large", "left"),), "light gray")
    x = image(scene)[None]
    background = estimate_background(x)
    assert torch.allclose(background[0], torch.tensor([192, 192, 192]) / 127.5 - 1)
    mask = silhouette(x, background, 0.2, 0.5)
    assert mask.shape == (1, 1, 64, 64) and mask[0, 0, 32, 10] == 1 and mask[0, 0, 32, 32] == 0
    noisy = (x + 0.05 * torch.randn_like(x)).clamp(-1, 1)  # faint noise stays background
    assert silhouette(noisy, estimate_background(noisy), 0.2, 0.5)[0, 0, 32, 32:].max() == 0
    cells = [crop(mask, cell, 0.0, 16) for cell in SCENE_CELLS]
    assert cells[POSITIONS.index("left")].mean() > 0.3 and all(c.max() == 0 for c in cells[1:])


def test_the_slot_network_reads_shape_without_colour() -> None:
    torch.manual_seed(0)
    net = SlotNetwork(SCENE_CELLS, SCENE_HEAD_VALUES, channels=4, feature_dim=8, mask_low=0.0, mask_high=1e-3).eval()
    heads = {name: i for i, name in enumerate(SCENE_HEAD_NAMES)}
    outputs = [net(image(Scene((ShapeObject("heart", colour, "large", "right"),), "black"))[None])
               for colour in ("red", "cyan", "pink")]
    for name in ("right_occupied", "right_shape", "right_size"):
        assert torch.allclose(outputs[0][heads[name]], outputs[1][heads[name]], atol=1e-5)
        assert torch.allclose(outputs[0][heads[name]], outputs[2][heads[name]], atol=1e-5)
    assert not torch.allclose(outputs[0][heads["right_color"]], outputs[1][heads["right_color"]])
    assert net.features(torch.zeros(2, 3, 64, 64)).shape == (2, net.feature_dim)
    with pytest.raises(ValueError, match="do not fit"):
        SlotNetwork(SCENE_CELLS, SCENE_HEAD_VALUES[:-1])


def test_a_slots_classifier_saves_and_loads(tmp_path) -> None:
    config = ClassifierConfig(SCENE_HEAD_VALUES, SCENE_HEAD_NAMES, 64, 4, 8, **SLOTS)
    classifier = AttributeClassifier(config).eval()
    assert is_scene_classifier(classifier)
    loaded = load_classifier(save_classifier(classifier, tmp_path / "c"))
    assert loaded.config == config and is_scene_classifier(loaded)
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    assert torch.equal(loaded.features(x), classifier.features(x))
    assert not is_scene_classifier(AttributeClassifier(ClassifierConfig((8, 8, 2, 5))))
    with pytest.raises(ValueError, match="cells"):
        ClassifierConfig(SCENE_HEAD_VALUES, arch="slots")


class Oracle(AttributeClassifier):
    """A scene classifier that reports planted scenes: image i carries id i in pixel (0, 0, 0)."""

    def __init__(self, scenes: list[Scene], extra: dict[int, int] | None = None) -> None:
        super().__init__(ClassifierConfig(SCENE_HEAD_VALUES, SCENE_HEAD_NAMES, 64, 4, 8, **SLOTS))
        self.targets = [scene_targets(s) for s in scenes]
        self.extra = extra or {}  # image -> a position where an extra object is seen

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        out = [torch.zeros(images.shape[0], v) for v in SCENE_HEAD_VALUES]
        for row, i in enumerate(images[:, 0, 0, 0].round().long().tolist()):
            targets = list(self.targets[i])
            if i in self.extra:
                targets[1 + 4 * self.extra[i]: 5 + 4 * self.extra[i]] = [1, 0, 0, 0]
            for head, value in enumerate(targets):
                out[head][row, max(value, 0)] = 5.0
        return out


def obj(shape: str, color: str, size: str, position: str) -> ShapeObject:
    return ShapeObject(shape, color, size, position)


def test_scoring_rules_position_found_slot_count_and_background() -> None:
    star, heart = obj("star", "red", "large", "left"), obj("heart", "blue", "small", "right")
    captions = [Scene((star,), "black"), Scene((star, heart), "white"), Scene((star, heart), "white"),
                Scene((star,), "black"), Scene((obj("circle", "red", "small", "top"),), "white")]
    drawn = [Scene((star,), "black"),  # right
             Scene((star, obj("heart", "blue", "small", "center")), "white"),  # second object in the wrong place
             Scene((star, obj("star", "blue", "small", "right")), "black"),  # wrong shape, background unnamed
             Scene((star,), "white"),  # wrong background, named
             Scene((obj("circle", "red", "small", "top"),), "white")]  # right, but an extra object
    classifier = Oracle(drawn, extra={4: POSITIONS.index("center")})
    images = torch.zeros(5, 3, 8, 8)
    images[:, 0, 0, 0] = torch.arange(5).float()
    hits = scene_hits(classifier, images, captions, [True, True, False, True, False])
    assert hits.objects[0].tolist() == [[True] * 4, [False] * 4]
    assert hits.objects[1, 1].tolist() == [True, True, True, False]  # shape, colour, size read where it was drawn
    assert hits.read[1, 1].tolist() == [4, 2, 0] and hits.read[0, 1].tolist() == [-1, -1, -1]
    assert hits.objects[2, 1].tolist() == [False, True, True, True]
    assert hits.background.tolist() == [True, True, False, False, True]
    assert hits.count.tolist() == [True, True, True, True, False]
    s = summarise_scene_hits(hits)
    assert s["num_one"] == 3 and s["num_two"] == 2 and s["num_one_background"] == 2
    assert s["one_objects"] == 1.0 and s["one_background"] == 0.5 and s["one_count"] == pytest.approx(2 / 3)
    assert s["one_all"] == pytest.approx(1 / 3)  # wrong named background, extra object
    assert s["two_first_objects"] == 1.0 and s["two_second_position"] == 0.5 and s["two_second_shape"] == 0.5
    assert s["two_objects"] == 0.0 and s["two_all"] == 0.0 and s["two_background"] == 1.0
    assert s["accuracy_all"] == pytest.approx(1 / 5) and "heldout_objects" not in s
    assert len(SceneHits.cat([hits, hits.subset(torch.tensor([True] * 2 + [False] * 3))])) == 7


def test_place_pairing_tells_exchanged_objects_from_own_ones() -> None:
    def two(c0: str, c1: str, s0: str = "small", s1: str = "large") -> Scene:
        return Scene((obj("circle", c0, s0, "left"), obj("square", c1, s1, "right")), "black")

    captions = [two("red", "blue"), two("red", "blue"), two("red", "blue"), two("red", "red"), two("red", "blue")]
    drawn = [two("red", "blue"),  # own
             Scene((obj("square", "blue", "large", "left"), obj("circle", "red", "small", "right")), "black"),  # swapped
             two("blue", "blue"),  # both the second's colour
             two("red", "red"),  # same colours: not counted for colour
             two("green", "blue")]  # a colour the caption does not name
    images = torch.zeros(5, 3, 8, 8)
    images[:, 0, 0, 0] = torch.arange(5).float()
    hits = scene_hits(Oracle(drawn), images, captions, [False] * 5)
    pairing = place_pairing(hits)
    assert pairing["color"] == {"n": 4, "own": 0.25, "exchanged": 0.25, "first": 0.0, "second": 0.25, "other": 0.25}
    assert pairing["shape"]["n"] == 5 and pairing["shape"]["exchanged"] == 0.2 and pairing["shape"]["own"] == 0.8
    assert pairing["size"]["exchanged"] == 0.2
    s = summarise_scene_hits(hits)
    assert s["two_color_own"] == 0.25 and s["two_color_exchanged"] == 0.25 and s["two_shape_exchanged"] == 0.2
    one = Scene((obj("circle", "red", "small", "left"),), "black")
    assert place_pairing(scene_hits(Oracle([one]), images[:1], [one], [False])) == {}


def test_held_out_objects_are_reported() -> None:
    scenes = [Scene((obj("circle", "yellow", "small", "top"), obj("star", "red", "large", "left")), "black"),
              Scene((obj("square", "cyan", "large", "center"),), "white")]
    images = torch.zeros(2, 3, 8, 8)
    images[:, 0, 0, 0] = torch.arange(2).float()
    drawn = [scenes[0], Scene((obj("square", "green", "large", "center"),), "white")]
    s = summarise_scene_hits(scene_hits(Oracle(drawn), images, scenes, [False, False]))
    assert s["num_heldout"] == 2 and s["heldout_shape"] == 1.0 and s["heldout_color"] == 0.5
    assert s["heldout_objects"] == 0.5


def test_scene_table_lines() -> None:
    values = {"one_shape": 0.5, "one_color": 1.0, "one_size": 1.0, "one_position": 1.0, "one_objects": 0.5,
              "one_count": 1.0, "one_all": 0.5, "num_one": 4, "accuracy_all": 0.5, "real_one_shape": 1.0,
              "real_accuracy_all": 1.0}
    lines = scene_table(values)
    assert lines[1].split() == ["one", "object", "gen", "4", "0.500", "1.000", "1.000", "1.000", "0.500", "1.000",
                                "0.500"]
    assert lines[2].split() == ["real", "1.000"] and lines[-1].split()[-1] == "1.000"
    assert not any("two objects" in line for line in lines)


def test_a_small_scene_classifier_learns_real_scenes_and_reads_held_out_pairs() -> None:
    images, targets = scene_training_data(1000)
    assert images.dtype == torch.uint8 and targets.shape == (1000, 21)
    assert targets.tolist() == [scene_targets(ShapesDataset("train").scene(i)) for i in range(1000)]
    data = _Stacked(images, targets, SCENE_HEAD_NAMES, SCENE_HEAD_VALUES)
    classifier = train_attribute_classifier(data, channels=4, feature_dim=16, epochs=5, batch_size=32, lr=0.01,
                                            lr_schedule="cosine", crop_size=16, colour_dim=8, **SLOTS)
    figures = {}
    for split in ("test", "unseen"):
        ds = ShapesDataset(split, size=150)
        scenes = [ds.scene(i) for i in range(150)]
        images = torch.stack([ds[i]["images"][-1] for i in range(150)])
        figures[split] = summarise_scene_hits(scene_hits(classifier, images, scenes, [True] * 150))
    test, unseen = figures["test"], figures["unseen"]
    # 1,000 training scenes, no held-out pair among them: held-out objects are read about as well as seen ones
    assert unseen["heldout_position"] > 0.97 and unseen["heldout_size"] > 0.95 and unseen["heldout_color"] > 0.9
    assert unseen["heldout_shape"] > 0.75 and unseen["heldout_shape"] > test["one_shape"] - 0.1
    assert test["one_count"] > 0.95 and test["one_background"] > 0.95 and test["two_count"] > 0.95


def test_scene_accuracy_metric_collects_and_summarises_with_confusions() -> None:
    from types import SimpleNamespace

    ds = ShapesDataset("test", size=6)
    scenes = [ds.scene(i) for i in range(6)]
    images = torch.zeros(6, 3, 8, 8)
    images[:, 0, 0, 0] = torch.arange(6).float()
    first = torch.tensor([True, True, True, False, False, False])
    batch = SampleBatch({"images": images, "scenes": scenes, "names_background": torch.ones(6, dtype=torch.bool),
                         "first_pass": first, "real_first": images[first]})
    ctx = SimpleNamespace(classifier=Oracle(scenes), samples=SimpleNamespace(num_real=3), classifier_info={"x": 1})
    metric = get_metric("scene_accuracy")
    metric.setup(ctx)
    parts = {key: [value] for key, value in metric.collect(batch, ctx).items()}
    result = metric.summarise(parts, ctx)
    assert result["values"]["accuracy_all"] == 1.0 and result["num_samples"] == 6
    assert result["values"]["real_accuracy_all"] == 1.0 and result["num_real"] == 3 and result["classifier"] == {"x": 1}
    shape = result["details"]["confusion"]["shape (every object)"]
    objects = sum(len(s.objects) for s in scenes)
    assert int(shape[0].sum()) == objects and int(shape[0].trace()) == objects  # the oracle reads every shape
    assert shape[2][-1] == "none" and len(shape[1]) == shape[0].shape[0]
    with pytest.raises(ValueError, match="slot scene classifier"):
        metric.setup(SimpleNamespace(classifier=AttributeClassifier(ClassifierConfig((3,), ("colour",)))))
