"""CUB birds: the real partial download and hand-made broken files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from attngan.data import CubDataset, DataError, MissingImagesError, build_dataset, collate
from attngan.data.common import resize_short_edge
from attngan.text import Vocabulary, tokenize

from .conftest import CUB, require
from .test_data_common import captions, make_cub, write_image, write_pickle

SIZES = (16, 32, 64)

# --------------------------------------------------------------------------- real data


def test_real_train_split_reports_the_partial_download() -> None:
    root = require(CUB)
    with pytest.raises(MissingImagesError) as info:
        CubDataset(root, "train", image_sizes=SIZES)
    message = str(info.value)
    assert "113 of 275 images" in message and "filenames.pickle" in message
    assert "007.Parakeet_Auklet" in message and "missing='skip'" in message


def test_real_train_split_loads_the_present_classes(caplog: pytest.LogCaptureFixture) -> None:
    root = require(CUB)
    with caplog.at_level(logging.WARNING):
        ds = CubDataset(root, "train", image_sizes=SIZES, missing="skip")
    assert "113 of 275" in caplog.text
    assert len(ds) == 162 and len(ds.missing) == 113
    assert {r.class_id for r in ds.records} == {2, 3, 5} and ds.num_classes == 3
    assert all(r.key.split(".")[0] == f"{r.class_id:03d}" for r in ds.records)
    assert ds.captions_per_image == 10 and all(len(ds.all_captions(i)) == 10 for i in range(len(ds)))
    item = ds[0]
    assert [tuple(t.shape) for t in item["images"]] == [(3, 16, 16), (3, 32, 32), (3, 64, 64)]
    assert 1 <= item["length"] <= 18 and item["class_id"] == 2
    batch = collate([ds[i] for i in range(4)])
    assert batch["images"][2].shape == (4, 3, 64, 64) and batch["tokens"].shape[0] == 4


def test_real_test_split_reports_missing_then_loads_present() -> None:
    root = require(CUB)
    with pytest.raises(MissingImagesError, match=r"2813 of 2933 images"):
        CubDataset(root, "test", image_sizes=SIZES)
    ds = CubDataset(root, "test", image_sizes=SIZES, missing="skip")
    assert len(ds) == 120 and len(ds.missing) == 2813
    assert {r.class_id for r in ds.records} == {1, 4}
    assert ds[5]["caption_index"] == 5 and not ds.train


def test_real_vocabulary_is_the_same_from_either_split() -> None:
    root = require(CUB)
    train = CubDataset(root, "train", image_sizes=SIZES, missing="skip")
    test = CubDataset(root, "test", image_sizes=SIZES, missing="skip")
    assert train.vocab == test.vocab and train.vocab.words[0] == "<end>" and len(train.vocab) > 500
    # the train split's first caption supplies the first words
    first = tokenize((root / "text" / f"{train.records[0].key}.txt").read_text().splitlines()[0])
    assert train.vocab.words[1:1 + len(dict.fromkeys(first))] == list(dict.fromkeys(first))


def test_real_caption_with_replacement_characters() -> None:
    root = require(CUB)
    ds = CubDataset(root, "train", image_sizes=SIZES, missing="skip")
    index = next(i for i, r in enumerate(ds.records) if r.key.endswith("Sooty_Albatross_0029_796357"))
    assert ds.caption_text(index, 4).startswith("this bird has a dark grey belly")


def test_real_images_are_rgb_and_cropped_by_the_formula() -> None:
    root = require(CUB)
    ds = CubDataset(root, "test", image_sizes=(64,), missing="skip", train=False)
    for index in (0, 37):
        record = ds.records[index]
        img = Image.open(record.image).convert("RGB")
        x, y, w, h = record.box
        r = int(max(w, h) * 0.75)
        cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
        crop = img.crop([max(0, cx - r), max(0, cy - r), min(img.width, cx + r), min(img.height, cy + r)])
        pipeline = transforms.Compose([transforms.Resize(64), transforms.CenterCrop(64), transforms.ToTensor(),
                                       transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
        assert torch.allclose(ds[index]["images"][0], pipeline(crop), atol=1e-6)
        assert np.array_equal(ds.decode(record, 76), np.asarray(resize_short_edge(crop, 76)))
    boxes = (root / "CUB_200_2011" / "bounding_boxes.txt").read_text().splitlines()
    ids = dict(line.split() for line in (root / "CUB_200_2011" / "images.txt").read_text().splitlines())
    number = int(ds.records[0].box_where.split()[-1])
    image_id, *values = boxes[number - 1].split()
    assert ids[image_id] == ds.records[0].key + ".jpg" and tuple(map(float, values)) == ds.records[0].box


# --------------------------------------------------------------------------- synthetic layouts


def _two_classes(**overrides: dict) -> dict[str, dict]:
    specs = {"001.A/a_1": {}, "001.A/a_2": {}, "002.B/b_1": {}}
    specs.update(overrides)
    return specs


def test_synthetic_layout_items_and_augmentation(tmp_path: Path) -> None:
    root = make_cub(tmp_path, _two_classes(), {"003.C/c_1": {}})
    ds = CubDataset(root, "train", image_sizes=SIZES, seed=4)
    assert len(ds) == 3 and [r.class_id for r in ds.records] == [1, 1, 2] and not ds.missing
    again = CubDataset(root, "train", image_sizes=SIZES, seed=4, vocab=ds.vocab)
    assert torch.equal(ds[1]["images"][2], again[1]["images"][2])
    ds.set_epoch(1)
    draws = {(ds[1]["caption_index"], ds[1]["images"][2].sum().item())}
    ds.set_epoch(2)
    draws.add((ds[1]["caption_index"], ds[1]["images"][2].sum().item()))
    assert len(draws) == 2
    assert "c_1" in ds.vocab  # test captions are part of the vocabulary
    assert isinstance(build_dataset("cub", root, image_sizes=(16,)), CubDataset)


def test_missing_image_error_and_skip(tmp_path: Path) -> None:
    root = make_cub(tmp_path, _two_classes(**{"002.B/b_2": {"absent": True}}))
    with pytest.raises(MissingImagesError, match=r"1 of 4 images .*002\.B/b_2"):
        CubDataset(root, image_sizes=SIZES)
    ds = CubDataset(root, image_sizes=SIZES, missing="skip")
    assert len(ds) == 3 and ds.missing == ["002.B/b_2"]
    with pytest.raises(ValueError, match="missing must be"):
        CubDataset(root, image_sizes=SIZES, missing="ignore")


def test_zero_byte_jpeg(tmp_path: Path) -> None:
    root = make_cub(tmp_path, _two_classes(**{"002.B/b_1": {"raw": b""}}))
    with pytest.raises(DataError, match=r"b_1\.jpg: empty image file"):
        CubDataset(root, image_sizes=SIZES)
    ds = CubDataset(root, image_sizes=SIZES, skip_bad=True)
    assert len(ds) == 2 and len(ds.skipped["empty_image"]) == 1


def test_truncated_jpeg_raises_on_access_or_is_replaced(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.jpg", (80, 60)).read_bytes()
    root = make_cub(tmp_path / "cub", _two_classes(**{"001.A/a_2": {"raw": good[: len(good) // 3]}}))
    ds = CubDataset(root, image_sizes=SIZES)
    with pytest.raises(DataError, match=r"a_2\.jpg"):
        ds[1]
    lenient = CubDataset(root, image_sizes=SIZES, skip_bad=True, train=False)
    assert lenient[1]["key"] == "002.B/b_1"  # the next readable image stands in
    assert "a_2.jpg" in lenient.skipped["unreadable_image"][0]
    assert lenient.preload() == 2 and [r.key for r in lenient.records] == ["001.A/a_1", "002.B/b_1"]


def test_png_alpha_cmyk_and_greyscale_files_load_as_rgb(tmp_path: Path) -> None:
    specs = _two_classes(**{"001.A/a_1": {"mode": "RGBA", "fmt": "PNG"}, "001.A/a_2": {"mode": "CMYK"},
                            "002.B/b_1": {"mode": "L"}})
    root = make_cub(tmp_path, specs)
    ds = CubDataset(root, image_sizes=SIZES)
    for i in range(3):
        image = ds[i]["images"][2]
        assert image.shape == (3, 64, 64)
    grey = ds.decode(ds.records[2], 64)
    assert grey.shape[2] == 3 and (grey[..., 0] == grey[..., 2]).all()


def test_bounding_box_outside_the_image(tmp_path: Path) -> None:
    root = make_cub(tmp_path, _two_classes(**{"002.B/b_1": {"box": (500, 400, 10, 10)}}))
    ds = CubDataset(root, image_sizes=SIZES)
    with pytest.raises(DataError, match=r"b_1\.jpg: bounding box .* outside .*bounding_boxes\.txt line 3"):
        ds[2]
    assert CubDataset(root, image_sizes=SIZES, use_bbox=False)[2]["key"] == "002.B/b_1"
    lenient = CubDataset(root, image_sizes=SIZES, skip_bad=True)
    lenient[2]
    assert "outside" in lenient.skipped["unreadable_image"][0]


def test_caption_file_with_too_few_lines(tmp_path: Path) -> None:
    root = make_cub(tmp_path, _two_classes(**{"001.A/a_2": {"lines": captions("a_2", 7)}}))
    with pytest.raises(DataError, match=r"a_2\.txt: 7 usable captions, 10 required"):
        CubDataset(root, image_sizes=SIZES)
    ds = CubDataset(root, image_sizes=SIZES, skip_bad=True)
    assert [r.key for r in ds.records] == ["001.A/a_1", "002.B/b_1"]
    assert "a_2.txt" in ds.skipped["too_few_captions"][0]


def test_missing_caption_file(tmp_path: Path) -> None:
    root = make_cub(tmp_path, _two_classes(**{"001.A/a_2": {"no_text": True}}))
    with pytest.raises(FileNotFoundError, match=r"a_2\.txt"):
        CubDataset(root, image_sizes=SIZES)
    assert len(CubDataset(root, image_sizes=SIZES, skip_bad=True).skipped["missing_captions"]) == 1


def test_empty_and_non_ascii_lines_name_file_and_line(tmp_path: Path) -> None:
    lines = captions("a_1", 10)
    root = make_cub(tmp_path, _two_classes(**{"001.A/a_1": {"lines": lines[:4] + ["", "日本語のみ"] + lines[4:]}}))
    with pytest.raises(DataError, match=r"a_1\.txt:5: empty line"):
        CubDataset(root, image_sizes=SIZES)
    ds = CubDataset(root, image_sizes=SIZES, skip_bad=True)
    assert [s.rsplit(":", 2)[-2] for s in ds.skipped["bad_caption_line"]] == ["5", "6"]
    assert len(ds) == 3
    (root / "text" / "001.A" / "a_1.txt").write_text("\n".join(lines[:4] + ["日本語のみ"] + lines[4:]))
    with pytest.raises(DataError, match=r"a_1\.txt:5: no ASCII word"):
        CubDataset(root, image_sizes=SIZES)


def test_an_empty_line_never_shifts_captions_onto_another_image(tmp_path: Path) -> None:
    first = captions("alpha", 10)
    specs = {"001.A/a_1": {"lines": first[:2] + [""] + first[2:]}, "001.A/a_2": {"lines": captions("bravo")},
             "002.B/b_1": {"lines": captions("charlie")}}
    root = make_cub(tmp_path, specs)
    ds = CubDataset(root, image_sizes=SIZES, skip_bad=True, train=False)
    for index, marker in enumerate(("alpha", "bravo", "charlie")):
        texts = [ds.caption_text(index, j) for j in range(10)]
        assert all(marker in t for t in texts) and len(set(texts)) == 10
        assert ds.caption_text(index, 9).endswith("number 9 has a short beak")
        item = ds[index]
        assert ds.vocab.decode(item["tokens"][: item["length"]].tolist())[1] == marker


def test_captions_pickle_supplies_vocabulary_and_ids(tmp_path: Path) -> None:
    root = make_cub(tmp_path, _two_classes())
    words = ["<end>", "a", "red", "bird", "with", "wings"]
    ixtoword = dict(enumerate(words))
    train_caps = [[1, 2, 3] if k % 2 else [1, 3, 4, 5] for k in range(30)]
    write_pickle(tmp_path / "captions.pickle", [train_caps, [], ixtoword, {w: i for i, w in ixtoword.items()}])
    ds = CubDataset(root, image_sizes=SIZES, captions_pickle=tmp_path / "captions.pickle", train=False)
    assert ds.vocab == Vocabulary(words)
    assert ds.all_captions(1)[:2] == [[1, 3, 4, 5], [1, 2, 3]]
    assert ds.caption_text(2, 0) == "a bird with wings"
    write_pickle(tmp_path / "short.pickle", [train_caps[:10], [], ixtoword, {}])
    with pytest.raises(DataError, match="10 train captions, expected 3 listed images x 10"):
        CubDataset(root, image_sizes=SIZES, captions_pickle=tmp_path / "short.pickle")


def test_long_captions_subsampled_in_training_truncated_in_eval(tmp_path: Path) -> None:
    long = " ".join(f"w{k}" for k in range(30))
    root = make_cub(tmp_path, {"001.A/a_1": {"lines": [long] * 10}})
    evaluation = CubDataset(root, image_sizes=SIZES, train=False)
    item = evaluation[0]
    assert item["length"] == 18 and evaluation.vocab.decode(item["tokens"].tolist()) == long.split()[:18]
    training = CubDataset(root, image_sizes=SIZES, train=True, seed=1)
    words = training.vocab.decode(training[0]["tokens"].tolist())
    order = [int(w[1:]) for w in words]
    assert len(words) == 18 and order == sorted(order) and order != list(range(18))
