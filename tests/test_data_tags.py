"""Tagged images: the real anime faces (a few hundred only) and broken tag files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attngan.data import (
    EYE_COLORS,
    HAIR_COLORS,
    DataError,
    MissingImagesError,
    TagsDataset,
    build_dataset,
    collate,
)
from attngan.data.folder import hash_split
from attngan.data.tags import parse_tag

from .conftest import ANIME, require
from .test_data_common import write_image


def test_parse_tag() -> None:
    assert parse_tag("blonde hair blue eyes") == ("blonde", "blue")
    assert parse_tag(" Light Blue hair red eyes ") == ("light blue", "red")
    assert parse_tag("blue eyes") is None


def test_real_anime_faces_items_attributes_and_classes() -> None:
    root = require(ANIME)
    ds = TagsDataset(root, "train", image_sizes=(16, 32, 64), limit=300)
    assert len(ds) == 300 and ds.captions_per_image == 1
    assert ds.attribute_names == ("hair", "eye") and ds.attribute_values == (HAIR_COLORS, EYE_COLORS)
    assert ds.num_classes == 120 and set(ds.vocab.words) == {"<end>", "hair", "eyes", *HAIR_COLORS, *EYE_COLORS}
    for i in range(0, 300, 15):
        item = ds[i]
        hair, eye = item["attributes"].tolist()
        assert item["class_id"] == hair * len(EYE_COLORS) + eye
        words = ds.vocab.decode(item["tokens"][: item["length"]].tolist())
        assert words == [HAIR_COLORS[hair], "hair", EYE_COLORS[eye], "eyes"]
        assert [tuple(t.shape) for t in item["images"]] == [(3, 16, 16), (3, 32, 32), (3, 64, 64)]
    batch = collate([ds[i] for i in range(8)])
    assert batch["attributes"].shape == (8, 2) and batch["tokens"].shape == (8, 4)


def test_real_split_is_a_deterministic_five_percent() -> None:
    root = require(ANIME)
    ids = [line.split(",", 1)[0] for line in (root / "tags.csv").read_text().splitlines()]
    held_out = [i for i in ids if hash_split(i, 0.05) == "test"]
    assert 0.04 < len(held_out) / len(ids) < 0.06
    test = TagsDataset(root, "test", image_sizes=(64,), limit=50)
    assert [r.key for r in test.records] == held_out[:50] and not test.train
    train = TagsDataset(root, "train", image_sizes=(64,), limit=50)
    assert not {r.key for r in train.records} & set(held_out)
    assert test.vocab == train.vocab


def test_real_bulk_cache_round_trip(tmp_path: Path) -> None:
    root = require(ANIME)
    fresh = TagsDataset(root, "test", image_sizes=(64,), limit=40, train=False)
    built = TagsDataset(root, "test", image_sizes=(64,), limit=40, train=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("tags-*.npy"))) == 2  # the images and their keys
    reread = TagsDataset(root, "test", image_sizes=(64,), limit=40, train=False, cache_dir=tmp_path)
    for i in (0, 17, 39):
        assert torch.equal(fresh[i]["images"][0], built[i]["images"][0])
        assert torch.equal(fresh[i]["images"][0], reread[i]["images"][0])
    assert build_dataset("tags", root, limit=5).attribute_values[0] == HAIR_COLORS


def _tags(root: Path, lines: list[str], images: int = 4) -> Path:
    (root / "tags.csv").write_text("\n".join(lines) + "\n")
    for k in range(images):
        write_image(root / "images" / f"{k}.jpg", (24, 24), seed=k)
    return root


def test_bad_rows_name_the_line(tmp_path: Path) -> None:
    root = _tags(tmp_path, ["0,red hair blue eyes", "1,green hair", "2,red hair green eyes", "3,blue hair blue eyes"])
    with pytest.raises(DataError, match=r"tags\.csv:2: tag 'green hair' is not"):
        TagsDataset(root, test_fraction=0.0)
    ds = TagsDataset(root, test_fraction=0.0, skip_bad=True, image_sizes=(16,))
    assert len(ds) == 3 and len(ds.skipped["bad_tag_row"]) == 1
    assert ds.attribute_values == (("blue", "red"), ("blue", "green"))
    assert [r.class_id for r in ds.records] == [2, 3, 0]
    (root / "tags.csv").write_text("0,red hair blue eyes\n0,red hair green eyes\n")
    with pytest.raises(DataError, match=r"tags\.csv:2: missing or repeated id"):
        TagsDataset(root, test_fraction=0.0)


def test_missing_and_empty_images(tmp_path: Path) -> None:
    root = _tags(tmp_path, [f"{k},red hair blue eyes" for k in range(5)])
    with pytest.raises(MissingImagesError, match=r"1 of 5 images .*4\.jpg"):
        TagsDataset(root, test_fraction=0.0)
    (root / "images" / "2.jpg").write_bytes(b"")
    ds = TagsDataset(root, test_fraction=0.0, missing="skip", skip_bad=True, image_sizes=(16,))
    assert [r.key for r in ds.records] == ["0", "1", "3"] and ds.missing == ["4.jpg"]
    assert len(ds.skipped["empty_image"]) == 1
