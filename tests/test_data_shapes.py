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
    example_captions,
    random_scene,
    render_shapes,
    shapes_vocabulary,
)
from attngan.data.shapes import (
    BACKGROUND_RGB,
    BACKGROUND_WORDS,
    CELL_PADDING,
    COLOR_RGB,
    HELD_OUT_TEMPLATES,
    ONE_OBJECT_TEMPLATES,
    POSITION_PHRASES,
    POSITION_REGIONS,
    SCALE_RANGE,
    SIZE_WORDS,
    SPLITS,
    TINT,
    TWO_OBJECT_TEMPLATES,
    UNSEEN_PAIRS,
    Scene,
    caption_plan,
    names_background,
    object_box,
    placement_range,
    templates_for,
)
from attngan.text import Vocabulary, pick_example_captions, tokenize


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
    for split in SPLITS[1:]:
        assert not torch.equal(ShapesDataset(split, size=20)[0]["images"][0], images[0])


def test_splits_names_sizes_and_aliases() -> None:
    assert SPLITS == ("train", "validation", "test", "unseen")
    assert [len(ShapesDataset(s)) for s in SPLITS] == [10_000, 1_000, 1_000, 1_000]
    val = ShapesDataset("val", size=3)
    assert val.split == "validation" and val[0]["key"] == "shapes-validation-0"
    assert val.scene(2) == ShapesDataset("validation", size=3).scene(2)
    with pytest.raises(ValueError, match="split must be one of train, validation, test, unseen"):
        ShapesDataset("dev")


def test_no_scene_is_shared_between_splits() -> None:
    scenes = {split: [ShapesDataset(split, size=300).scene(i) for i in range(300)] for split in SPLITS}
    seen: dict[Scene, str] = {}
    for split, items in scenes.items():
        for scene in items:
            assert seen.setdefault(scene, split) == split, (scene, split)
        assert len(set(items)) == len(items)


def test_unseen_pairs_cover_every_shape_and_colour_once() -> None:
    assert len(UNSEEN_PAIRS) == 8 and len(set(UNSEEN_PAIRS)) == 8
    assert sorted(s for s, _ in UNSEEN_PAIRS) == sorted(SHAPES) and sorted(c for _, c in UNSEEN_PAIRS) == sorted(COLORS)


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_seen_splits_never_draw_a_held_out_pair(split: str) -> None:
    ds = ShapesDataset(split, size=1500)
    objects = [o for i in range(1500) for o in ds.scene(i).objects]
    assert not any((o.shape, o.color) in UNSEEN_PAIRS for o in objects)
    pairs = {(o.shape, o.color) for o in objects}
    assert len(pairs) == 56  # every other pair occurs
    shapes = np.bincount([SHAPES.index(o.shape) for o in objects], minlength=8) / len(objects)
    colours = np.bincount([COLORS.index(o.color) for o in objects], minlength=8) / len(objects)
    assert np.abs(shapes - 1 / 8).max() < 0.03 and np.abs(colours - 1 / 8).max() < 0.03


def test_unseen_split_scenes_each_hold_exactly_one_held_out_pair() -> None:
    ds = ShapesDataset("unseen", size=400)
    found = set()
    for i in range(400):
        scene = ds.scene(i)
        held = [o for o in scene.objects if o.unseen_pair]
        assert len(held) == 1, scene
        found.add((held[0].shape, held[0].color))
        assert all(set(tokenize(held[0].shape)) <= set(tokenize(c)) for c in ds.captions(i))
    assert found == set(UNSEEN_PAIRS)
    first = [ds.scene(i).objects[0].unseen_pair for i in range(400) if len(ds.scene(i).objects) == 2]
    assert 0.3 < np.mean(first) < 0.7  # either object of a two-object scene can be the held-out one


def test_item_layout_and_value_range() -> None:
    ds = ShapesDataset("train", image_sizes=(64, 16, 32), size=8)
    item = ds[3]
    assert [tuple(t.shape) for t in item["images"]] == [(3, 16, 16), (3, 32, 32), (3, 64, 64)]
    for t in item["images"]:
        assert t.dtype == torch.float32 and t.min() >= -1 and t.max() <= 1
    assert item["tokens"].shape == (18,) and item["tokens"].dtype == torch.int64
    assert 1 <= item["length"] <= 18 and (item["tokens"][item["length"]:] == 0).all()
    assert (item["tokens"][: item["length"]] > 0).all()
    assert item["attributes"].shape == (8,) and item["key"] == "shapes-train-3"
    assert ShapesDataset("train", size=2, max_objects=1)[0]["attributes"].shape == (4,)


def test_class_id_is_the_description_of_the_objects_in_any_order() -> None:
    a, b = ShapeObject("star", "red", "small", "left"), ShapeObject("heart", "blue", "large", "top")
    assert Scene((a, b), "black").class_id == Scene((b, a), "white").class_id
    assert Scene((a,), "black").class_id == a.code < 640
    assert Scene((a, b), "black").class_id != Scene((a, ShapeObject("heart", "blue", "small", "top")), "black").class_id
    ds = ShapesDataset("train", size=40)
    assert ds.class_ids() == [ds[i]["class_id"] for i in range(40)] == [ds.scene(i).class_id for i in range(40)]
    assert max(ds.class_ids()) < ds.num_classes
    assert ds.variants(3, 1)[0].class_id == ds.scene(3).class_id


def _assert_caption_matches(caption: str, obj: ShapeObject) -> None:
    text = " ".join(tokenize(caption))
    words = set(text.split())
    assert obj.color in words and obj.shape in words, caption
    assert words & set(SIZE_WORDS[obj.size]), caption
    assert any(phrase in text for phrase in POSITION_PHRASES[obj.position]), caption


@pytest.mark.parametrize("max_objects", [1, 2])
def test_every_caption_names_the_attributes_of_its_objects(max_objects: int) -> None:
    for split in SPLITS:
        ds = ShapesDataset(split, size=60, max_objects=max_objects, min_objects=max_objects)
        for i in range(60):
            scene = ds.scene(i)
            assert len(scene.objects) == max_objects
            assert len({o.position for o in scene.objects}) == max_objects  # never share a position
            captions = ds.captions(i)
            assert len(captions) == ds.captions_per_image == 10
            for caption in captions:
                for obj in scene.objects:
                    _assert_caption_matches(caption, obj)
                if names_background(caption):
                    assert any(w in caption for w in BACKGROUND_WORDS[scene.background]), caption
                if max_objects == 2 and scene.objects[0].code // 10 != scene.objects[1].code // 10:  # in scene order
                    text = " ".join(tokenize(caption))
                    first, second = (text.index(f"{o.color} {o.shape}") if f"{o.color} {o.shape}" in text
                                     else text.index(f"{o.shape} in {o.color}") for o in scene.objects)
                    assert first < second, caption
            attributes = ds[i]["attributes"].tolist()
            assert attributes == [a for o in scene.objects for a in o.attributes]


def test_object_mix_is_configurable() -> None:
    ds = ShapesDataset("train", size=400)
    counts = [len(ds.scene(i).objects) for i in range(400)]
    assert 0.4 < counts.count(2) / 400 < 0.6
    for i in range(40):
        attributes = ds[i]["attributes"].tolist()
        assert len(attributes) == 8
        if counts[i] == 1:
            assert attributes[4:] == [-1, -1, -1, -1]
    mostly_two = ShapesDataset("train", size=200, two_object_fraction=0.9)
    assert sum(len(mostly_two.scene(i).objects) == 2 for i in range(200)) > 160
    assert {len(ShapesDataset("test", size=50, two_object_fraction=0.0).scene(i).objects) for i in range(50)} == {1}
    with pytest.raises(ValueError, match="two_object_fraction"):
        ShapesDataset(two_object_fraction=1.5)


def test_backgrounds_vary_and_about_half_the_captions_name_them() -> None:
    ds = ShapesDataset("train", size=400)
    backgrounds = [ds.scene(i).background for i in range(400)]
    assert set(backgrounds) == set(BACKGROUNDS) and min(backgrounds.count(b) for b in BACKGROUNDS) > 70
    captions = [c for i in range(400) for c in ds.captions(i)]
    assert 0.35 < np.mean([names_background(c) for c in captions]) < 0.6
    text = " ".join(captions)
    for words in (*SIZE_WORDS.values(), *POSITION_PHRASES.values(), *BACKGROUND_WORDS.values()):
        for word in words:  # every synonym is used
            assert word in text, word
    assert names_background("a red star on the left on a dark grey background")
    assert not names_background("a red star on the left")


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
    longest_bg = max((w for ws in BACKGROUND_WORDS.values() for w in ws), key=lambda b: len(b.split()))
    longest_pos = max((p for ps in POSITION_PHRASES.values() for p in ps), key=lambda p: len(p.split()))
    text = re.sub(r"\{bg\}", longest_bg, template)
    text = re.sub(r"\{pos\d?\}", longest_pos, text)
    text = re.sub(r"\{(size|color|shape)\d?\}", "word", text)
    return tokenize(text)


def test_no_caption_exceeds_eighteen_words() -> None:
    for template in ONE_OBJECT_TEMPLATES + TWO_OBJECT_TEMPLATES:
        assert len(_longest_fill(template)) <= 18, template


def test_vocabulary_covers_every_word_any_split_can_produce() -> None:
    vocab = shapes_vocabulary()
    assert vocab == shapes_vocabulary() and vocab.words[0] == "<end>"
    fillers = [p for table in (SIZE_WORDS, POSITION_PHRASES, BACKGROUND_WORDS) for ps in table.values() for p in ps]
    for template in ONE_OBJECT_TEMPLATES + TWO_OBJECT_TEMPLATES:
        for filler in (*fillers, *SHAPES, *COLORS):
            text = re.sub(r"\{\w+\}", filler, template)
            assert all(w in vocab for w in tokenize(text)), text
    for split in SPLITS:
        ds = ShapesDataset(split, size=60)
        for i in range(60):
            for caption in ds.captions(i):
                assert len(vocab.encode_tokens(tokenize(caption))[1]) == 0, caption


def test_held_out_templates_reuse_training_words_and_only_evaluation_splits_use_them() -> None:
    fields = r"\{\w+\}"
    for count, templates in ((1, ONE_OBJECT_TEMPLATES), (2, TWO_OBJECT_TEMPLATES)):
        n_train = len(templates) - HELD_OUT_TEMPLATES[count]
        train_words = {w for t in templates[:n_train] for w in tokenize(re.sub(fields, " ", t))}
        for template in templates[n_train:]:
            assert set(tokenize(re.sub(fields, " ", template))) <= train_words, template
        rng = np.random.default_rng(0)
        train_plan = {t for _ in range(50) for t, _ in caption_plan(rng, "train", count, 10)}
        assert max(train_plan) < n_train
        for split in SPLITS[1:]:
            plan = {t for _ in range(50) for t, _ in caption_plan(rng, split, count, 10)}
            assert set(range(n_train, len(templates))) <= plan


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
        assert np.linalg.norm(np.subtract(x, y)) - 2 * TINT * 3 ** 0.5 > 50, (a, b)  # tinted as far apart as can be


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
    a = random_scene(np.random.default_rng(5), 2, 2)
    b = random_scene(np.random.default_rng(5), 2, 2)
    assert a == b and len(a.objects) == 2 and a.background in BACKGROUNDS
    with pytest.raises(ValueError):
        random_scene(np.random.default_rng(0), 3)
    with pytest.raises(ValueError, match="pairs"):
        random_scene(np.random.default_rng(0), pairs="some")


def _cell_of(box: tuple[float, float, float, float]) -> str:
    inside = [p for p, (x0, y0, x1, y1) in POSITION_REGIONS.items()
              if box[0] >= x0 + CELL_PADDING - 1e-9 and box[1] >= y0 + CELL_PADDING - 1e-9
              and box[2] <= x1 - CELL_PADDING + 1e-9 and box[3] <= y1 - CELL_PADDING + 1e-9]
    return inside[0] if inside else "none"


def test_every_object_fits_its_cell_at_any_scale_and_the_cells_are_disjoint() -> None:
    for (p, a), (q, b) in itertools.combinations(POSITION_REGIONS.items(), 2):
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (p, q)
    for shape, size, position in itertools.product(SHAPES, SIZES, POSITIONS):
        for scale in SCALE_RANGE:  # the room left is smallest at the largest scale
            dx0, dy0, dx1, dy1 = placement_range(shape, size, position, scale)
            assert dx0 <= dx1 and dy0 <= dy1, (shape, size, position, scale)
            for dx, dy in itertools.product((dx0, dx1), (dy0, dy1)):  # the corners of the jitter
                box = object_box(ShapeObject(shape, "red", size, position, dx, dy, scale))
                assert _cell_of(box) == position, (shape, size, position, scale, box)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        for obj in random_scene(rng).objects:
            assert _cell_of(object_box(obj)) == obj.position and SCALE_RANGE[0] <= obj.scale <= SCALE_RANGE[1]


@pytest.mark.parametrize("side", [64, 128])
def test_two_objects_never_overlap_when_drawn(side: int) -> None:
    ds = ShapesDataset("train", size=300, two_object_fraction=1.0)
    tight = 0
    for i in range(300):
        scene = ds.scene(i)
        masks = [np.asarray(render_shapes([o], "black", side)).max(axis=2) > 0 for o in scene.objects]
        assert not (masks[0] & masks[1]).any(), scene
        assert all(m.sum() > 0 for m in masks)
        a, b = (object_box(o) for o in scene.objects)
        tight += max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3]) < 0.06
    assert tight >= 5  # some neighbours come within 4 px (at 64 px), and still do not touch


def test_real_variants_share_the_description_and_vary_place_scale_and_tint() -> None:
    ds = ShapesDataset("test", size=20)
    for i in range(20):
        scene, variants = ds.scene(i), ds.variants(i, 8)
        assert variants == ds.variants(i, 8) and all(v.same_description(scene) for v in variants)
        assert len({v.objects[0].scale for v in variants}) == 8 and len({v.objects[0].tint for v in variants}) > 4
        images = [np.asarray(ds.render(v)) for v in variants]
        assert all(not np.array_equal(images[0], im) for im in images[1:])
    small = [o for i in range(20) for v in ds.variants(i, 8) for o in v.objects if o.size == "small"]
    assert max(abs(o.dx) for o in small) > 0.04 and max(abs(o.dy) for o in small) > 0.04  # > 2.5 px at 64 px
    free = ds.variants(0, 40, keep_background=False)
    assert {v.background for v in free} == set(BACKGROUNDS)


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


def test_example_captions_are_one_and_two_object_captions_the_model_reads() -> None:
    data = ShapesDataset("train", size=2000)
    examples = example_captions(data, data.vocab, count=6, max_words=18)
    assert len(examples) == len(set(examples)) == 6
    objects = {len(re.findall("|".join(SHAPES), c)) for c in examples}
    assert objects == {1, 2}
    assert examples == example_captions(data, data.vocab, count=6, max_words=18)  # deterministic
    # a vocabulary without some synonyms (an older model's): only captions it reads whole
    words = [w for w in data.vocab.words if w not in ("middle", "centre", "grey", "little")]
    older = Vocabulary(words)
    for caption in example_captions(data, older, count=6, max_words=18):
        assert all(t in older for t in tokenize(caption)), caption
    assert all(len(tokenize(c)) <= 8 for c in example_captions(data, data.vocab, count=3, max_words=8))
    assert pick_example_captions(["zebra", "a  red   circle", "a red circle"], data.vocab) == ["a red circle"]


def test_only_restricts_the_scenes_and_names_what_is_at_fault() -> None:
    from attngan.data.shapes import ShapesDataset

    only = {"color": ["red", "blue"], "size": "large", "position": ["center"], "background": ["black"]}
    data = ShapesDataset("train", size=200, max_objects=1, only=only)
    shapes = set()
    for i in range(len(data)):
        scene = data.scene(i)
        (obj,) = scene.objects
        assert obj.color in ("red", "blue") and obj.size == "large" and obj.position == "center"
        assert scene.background == "black" and not obj.unseen_pair
        shapes.add(obj.shape)
    assert len(shapes) == 8  # red hexagon and blue cross are held out: they come in the other colour
    assert len(data.vocab) == len(ShapesDataset("train", size=4).vocab)  # same words
    with pytest.raises(ValueError, match="only.color: 'teal'"):
        ShapesDataset("train", size=4, only={"color": ["teal"]})
    with pytest.raises(ValueError, match="unknown attribute 'hue'"):
        ShapesDataset("train", size=4, only={"hue": ["red"]})
    with pytest.raises(ValueError, match="2 objects need 2 positions"):
        ShapesDataset("train", size=4, min_objects=2, only={"position": ["left"]})
    with pytest.raises(ValueError, match="held-out"):
        ShapesDataset("unseen", size=4, only={"shape": ["circle"], "color": ["red"]})


def test_one_caption_is_the_same_as_in_the_list_of_all() -> None:
    data = ShapesDataset(size=12)
    for index in range(12):
        assert [data.caption_text(index, k) for k in range(len(data.captions(index)))] == data.captions(index)
