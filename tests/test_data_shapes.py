"""The procedural shapes data set: determinism, captions, attributes, vocabulary."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from attngan.data import (
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapeObject,
    ShapesDataset,
    build_dataset,
    caption_for,
    collate,
    random_scene,
    render_shapes,
    shapes_vocabulary,
)
from attngan.data.shapes import (
    BACKGROUND_RGB,
    COLOR_RGB,
    ONE_OBJECT_TEMPLATES,
    POSITION_PHRASES,
    SIZE_WORDS,
    TEST_ONLY_TEMPLATES,
    TWO_OBJECT_TEMPLATES,
    caption_plan,
    templates_for,
)
from attngan.text import tokenize


def test_same_seed_and_index_give_identical_items() -> None:
    a = ShapesDataset("train", image_sizes=(16, 32, 64), seed=3, size=50)
    b = ShapesDataset("train", image_sizes=(16, 32, 64), seed=3, size=50)
    for index in (0, 7, 49):
        x, y = a[index], b[index]
        for u, v in zip(x["images"], y["images"]):
            assert torch.equal(u, v)
        assert torch.equal(x["tokens"], y["tokens"]) and x["caption_index"] == y["caption_index"]
        assert torch.equal(x["attributes"], y["attributes"])


def test_different_index_seed_or_split_give_different_images() -> None:
    train = ShapesDataset("train", size=20)
    images = [train[i]["images"][0] for i in range(20)]
    assert all(not torch.equal(images[i], images[j]) for i, j in itertools.combinations(range(20), 2))
    other_seed = ShapesDataset("train", size=20, seed=1)
    assert not torch.equal(other_seed[0]["images"][0], images[0])
    test = ShapesDataset("test", size=20)
    assert not torch.equal(test[0]["images"][0], images[0])


def test_item_layout_and_value_range() -> None:
    ds = ShapesDataset("train", image_sizes=(64, 16, 32), size=8)
    item = ds[3]
    assert [tuple(t.shape) for t in item["images"]] == [(3, 16, 16), (3, 32, 32), (3, 64, 64)]
    for t in item["images"]:
        assert t.dtype == torch.float32 and t.min() >= -1 and t.max() <= 1
    assert item["tokens"].shape == (18,) and item["tokens"].dtype == torch.int64
    assert 1 <= item["length"] <= 18 and (item["tokens"][item["length"]:] == 0).all()
    assert (item["tokens"][: item["length"]] > 0).all()
    assert item["attributes"].shape == (4,) and item["key"] == "shapes-train-3"
    assert len(ds) == 8 and len(ShapesDataset("train")) == 10_000 and len(ShapesDataset("test")) == 1_000


def test_class_id_is_the_attribute_combination_of_object_zero() -> None:
    ds = ShapesDataset("train", size=30, max_objects=2)
    assert ds.num_classes == len(SHAPES) * len(COLORS) * len(SIZES) * len(POSITIONS)
    for i in range(30):
        item = ds[i]
        s, c, z, p = item["attributes"][:4].tolist()
        assert item["class_id"] == ((s * len(COLORS) + c) * len(SIZES) + z) * len(POSITIONS) + p


def _assert_caption_matches(caption: str, obj: ShapeObject) -> None:
    words = set(tokenize(caption))
    assert obj.color in words and obj.shape in words, caption
    assert words & set(SIZE_WORDS[obj.size]), caption
    assert obj.position in words, caption


@pytest.mark.parametrize("max_objects", [1, 2])
def test_every_caption_names_the_attributes_of_its_objects(max_objects: int) -> None:
    for split in ("train", "test"):
        ds = ShapesDataset(split, size=60, max_objects=max_objects)
        for i in range(60):
            scene = ds.scene(i)
            assert len(scene.objects) == max_objects
            assert len({o.position for o in scene.objects}) == max_objects  # never share a position
            captions = ds.captions(i)
            assert len(captions) == ds.captions_per_image == 10
            for caption in captions:
                for obj in scene.objects:
                    _assert_caption_matches(caption, obj)
            attributes = ds[i]["attributes"].tolist()
            assert attributes == [a for o in scene.objects for a in o.attributes]


def test_mixed_object_counts_pad_attributes() -> None:
    ds = ShapesDataset("train", size=40, max_objects=2, min_objects=1)
    counts = {len(ds.scene(i).objects) for i in range(40)}
    assert counts == {1, 2}
    for i in range(40):
        attributes = ds[i]["attributes"].tolist()
        assert len(attributes) == 8
        if len(ds.scene(i).objects) == 1:
            assert attributes[4:] == [-1, -1, -1, -1]


def test_item_caption_is_one_of_the_image_captions() -> None:
    ds = ShapesDataset("train", size=10)
    for i in range(10):
        item = ds[i]
        ids = item["tokens"][: item["length"]].tolist()
        assert ids == ds.all_captions(i)[item["caption_index"]]
        assert ds.vocab.decode(ids) == tokenize(ds.caption_text(i, item["caption_index"]))


def test_caption_choice_random_in_training_deterministic_in_eval() -> None:
    train = ShapesDataset("train", size=30)
    first = [train[i]["caption_index"] for i in range(30)]
    train.set_epoch(1)
    second = [train[i]["caption_index"] for i in range(30)]
    assert first != second and len(set(first)) > 3
    evaluation = ShapesDataset("test", size=30)
    assert [evaluation[i]["caption_index"] for i in range(30)] == [i % 10 for i in range(30)]
    scene_before = train.scene(5)
    train.set_epoch(7)
    assert train.scene(5) == scene_before  # images never depend on the epoch


def _longest_fill(template: str) -> list[str]:
    longest_bg = max(BACKGROUNDS, key=lambda b: len(b.split()))
    longest_pos = max((p for ps in POSITION_PHRASES.values() for p in ps), key=lambda p: len(p.split()))
    text = re.sub(r"\{bg\}", longest_bg, template)
    text = re.sub(r"\{pos\d?\}", longest_pos, text)
    text = re.sub(r"\{(size|color|shape)\d?\}", "word", text)
    return tokenize(text)


def test_no_caption_exceeds_eighteen_words() -> None:
    for template in ONE_OBJECT_TEMPLATES + TWO_OBJECT_TEMPLATES:
        assert len(_longest_fill(template)) <= 18, template


def test_vocabulary_covers_every_word_a_template_can_produce() -> None:
    vocab = shapes_vocabulary()
    assert vocab == shapes_vocabulary() and vocab.words[0] == "<end>"
    sizes = [w for ws in SIZE_WORDS.values() for w in ws]
    phrases = [p for ps in POSITION_PHRASES.values() for p in ps]
    for template in ONE_OBJECT_TEMPLATES + TWO_OBJECT_TEMPLATES:
        for filler in (*sizes, *phrases, *SHAPES, *COLORS, *BACKGROUNDS):
            text = re.sub(r"\{\w+\}", filler, template)
            assert all(w in vocab for w in tokenize(text)), text
    ds = ShapesDataset("test", size=50, max_objects=2)
    for i in range(50):
        for caption in ds.captions(i):
            assert len(vocab.encode_tokens(tokenize(caption))[1]) == 0, caption


def test_test_only_templates_reuse_training_words() -> None:
    fields = r"\{\w+\}"
    for count, templates in ((1, ONE_OBJECT_TEMPLATES), (2, TWO_OBJECT_TEMPLATES)):
        n_train = len(templates) - TEST_ONLY_TEMPLATES[count]
        train_words = {w for t in templates[:n_train] for w in tokenize(re.sub(fields, " ", t))}
        for template in templates[n_train:]:
            assert set(tokenize(re.sub(fields, " ", template))) <= train_words, template
        rng = np.random.default_rng(0)
        train_plan = {t for _ in range(50) for t, _ in caption_plan(rng, "train", count, 10)}
        test_plan = {t for _ in range(50) for t, _ in caption_plan(rng, "test", count, 10)}
        assert max(train_plan) < n_train and set(range(n_train, len(templates))) <= test_plan


def test_caption_for_is_pure_and_uses_articles() -> None:
    obj = ShapeObject("hexagon", "orange", "large", "left")
    assert caption_for([obj], "white", 0) == "a large orange hexagon on the left"
    assert caption_for([obj], "white", 6) == "a large hexagon in orange on the left"
    assert caption_for([obj], "white", 4) == "an orange hexagon on the left, it is large"
    assert caption_for([{"shape": "star", "color": "red", "size": "small", "position": "top"}], "black", 2) == \
        "a small red star at the top on a black background"
    two = [obj, ShapeObject("star", "blue", "small", "right")]
    assert caption_for(two, "black", 0) == "a large orange hexagon on the left and a small blue star on the right"
    with pytest.raises(ValueError, match="unknown shape"):
        ShapeObject("blob", "red", "small", "left")
    with pytest.raises(ValueError):
        templates_for(3)


def test_object_colors_stand_out_from_every_background_and_each_other() -> None:
    for color, rgb in COLOR_RGB.items():
        for background, bg in BACKGROUND_RGB.items():
            assert np.linalg.norm(np.subtract(rgb, bg)) > 80, (color, background)
    for (a, x), (b, y) in itertools.combinations(COLOR_RGB.items(), 2):
        assert np.linalg.norm(np.subtract(x, y)) > 80, (a, b)


def test_render_places_objects_where_the_caption_says() -> None:
    for position in POSITIONS:
        img = np.asarray(render_shapes([ShapeObject("square", "red", "large", position)], "black", 64)).astype(int)
        mask = (img[..., 0] > 100) & (img[..., 1] < 100)
        ys, xs = np.nonzero(mask)
        cx, cy = xs.mean() / 64, ys.mean() / 64
        expected = {"left": cx < 0.3, "right": cx > 0.7, "top": cy < 0.3, "bottom": cy > 0.7,
                    "center": abs(cx - 0.5) < 0.05 and abs(cy - 0.5) < 0.05}
        assert expected[position], (position, cx, cy)
    small = np.asarray(render_shapes([ShapeObject("circle", "blue", "small", "center")], "white", 64)).astype(int)
    large = np.asarray(render_shapes([ShapeObject("circle", "blue", "large", "center")], "white", 64)).astype(int)
    assert (large[..., 2] > large[..., 0] + 100).sum() > 2 * (small[..., 2] > small[..., 0] + 100).sum()
    assert render_shapes([], "light gray", 32).getpixel((0, 0)) == BACKGROUND_RGB["light gray"]


def test_random_scene_is_deterministic_for_a_generator_state() -> None:
    a = random_scene(np.random.default_rng(5), 2)
    b = random_scene(np.random.default_rng(5), 2)
    assert a == b and len(a.objects) == 2 and a.background in BACKGROUNDS
    with pytest.raises(ValueError):
        random_scene(np.random.default_rng(0), 3)


def test_collate_of_shapes_items() -> None:
    ds = ShapesDataset("train", image_sizes=(16, 32), size=6, max_objects=2)
    batch = collate([ds[i] for i in range(6)])
    assert [tuple(t.shape) for t in batch["images"]] == [(6, 3, 16, 16), (6, 3, 32, 32)]
    assert batch["tokens"].shape == (6, int(batch["lengths"].max()))
    assert batch["attributes"].shape == (6, 8) and batch["class_ids"].shape == (6,)
    assert batch["keys"] == [f"shapes-train-{i}" for i in range(6)]


def test_dataloader_workers_reproduce_single_process_batches() -> None:
    ds = ShapesDataset("train", image_sizes=(16,), size=16)
    ds.set_epoch(2)
    single = list(DataLoader(ds, batch_size=4, collate_fn=collate))
    workers = list(DataLoader(ds, batch_size=4, collate_fn=collate, num_workers=2))
    for a, b in zip(single, workers):
        assert torch.equal(a["images"][0], b["images"][0]) and torch.equal(a["tokens"], b["tokens"])


def test_build_dataset_makes_shapes() -> None:
    ds = build_dataset("shapes", split="test", size=5, image_sizes=(32,))
    assert isinstance(ds, ShapesDataset) and len(ds) == 5
    with pytest.raises(ValueError, match="no root"):
        build_dataset("shapes", "somewhere")
    with pytest.raises(ValueError, match="unknown data set kind"):
        build_dataset("mnist", "x")
