"""Plain captioned folders: name.jpg + name.txt, captions.jsonl, captions.csv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attngan.data import DataError, FolderDataset, MissingImagesError, build_dataset
from attngan.data.folder import hash_split

from .test_data_common import write_image

SIZES = (16, 32)


def _pairs(root: Path, count: int = 12) -> Path:
    for k in range(count):
        sub = root / ("nested" if k % 3 == 0 else "")
        write_image(sub / f"img{k:02d}.jpg", (40, 30), seed=k)
        (sub / f"img{k:02d}.txt").write_text(f"picture {k} of a red house\nanother view {k}\n")
    return root


def test_image_text_pairs_split_by_hash(tmp_path: Path) -> None:
    root = _pairs(tmp_path)
    train = FolderDataset(root, "train", image_sizes=SIZES, test_fraction=0.4)
    test = FolderDataset(root, "test", image_sizes=SIZES, test_fraction=0.4, vocab=train.vocab)
    keys = [r.key for r in train.records] + [r.key for r in test.records]
    assert sorted(keys) == sorted({*keys}) and len(keys) == 12 and len(test) >= 1 and len(train) >= 1
    assert all(hash_split(f"{r.key}.jpg", 0.4) == "test" for r in test.records)
    assert "nested/img00" in keys
    assert train.num_classes == 12 and len({r.class_id for r in train.records + test.records}) == 12
    assert train.captions_per_image == 2 and train.caption_text(0, 1).startswith("another view")
    again = FolderDataset(root, "train", image_sizes=SIZES, test_fraction=0.4)
    assert [r.key for r in again.records] == [r.key for r in train.records] and again.vocab == train.vocab
    assert train[0]["images"][1].shape == (3, 32, 32)
    assert isinstance(build_dataset("folder", root, image_sizes=(16,), test_fraction=0.4), FolderDataset)


def test_image_without_caption_file(tmp_path: Path) -> None:
    root = _pairs(tmp_path, 4)
    write_image(root / "lonely.png", (20, 20), fmt="PNG")
    with pytest.raises(DataError, match=r"lonely\.png: no caption file lonely\.txt"):
        FolderDataset(root, image_sizes=SIZES, test_fraction=0.0)
    ds = FolderDataset(root, image_sizes=SIZES, test_fraction=0.0, skip_bad=True)
    assert len(ds) == 4 and len(ds.skipped["missing_captions"]) == 1


def test_jsonl_with_captions_lists_split_field_and_alpha_png(tmp_path: Path) -> None:
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[:, 12:, 3] = 255
    (tmp_path / "pics").mkdir()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "pics" / "half.png")
    write_image(tmp_path / "pics" / "b.jpg", (30, 30))
    write_image(tmp_path / "c.jpg", (30, 30))
    rows = [{"image": "pics/half.png", "caption": "a blue half square", "split": "train"},
            {"image": "pics/half.png", "caption": "blue on the right"},
            {"image": "./pics/b.jpg", "captions": ["noise one", "noise two"], "split": "train"},
            {"image": "c.jpg", "caption": "test noise", "split": "test"}]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = FolderDataset(tmp_path, image_sizes=(16,), train=False)
    assert [r.key for r in ds.records] == ["pics/b", "pics/half"]
    assert ds.all_captions(1) == [ds.vocab.encode("a blue half square").ids, ds.vocab.encode("blue on the right").ids]
    image = ds[1]["images"][0]
    assert image[:, :, :4].min() > 0.9  # transparent left half became white
    assert image[0, :, -4:].max() < -0.9 and image[2, :, -4:].min() > 0.9  # opaque blue right half
    test = FolderDataset(tmp_path, "test", image_sizes=(16,))
    assert [r.key for r in test.records] == ["c"] and test.vocab == ds.vocab


def test_jsonl_problems_name_the_line(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg")
    path = tmp_path / "captions.jsonl"
    path.write_text('{"image": "a.jpg", "caption": "ok words", "split": "train"}\n{"image": 3}\n')
    with pytest.raises(DataError, match=r"captions\.jsonl:2: expected an object with a string 'image'"):
        FolderDataset(tmp_path, image_sizes=SIZES)
    path.write_text('{"image": "a.jpg", "caption": "...", "split": "train"}\n')
    with pytest.raises(DataError, match=r"captions\.jsonl:1: caption '...' has no ASCII word"):
        FolderDataset(tmp_path, image_sizes=SIZES)
    path.write_text('{"image": "a.jpg", "caption": "ok", "split": "val"}\n')
    with pytest.raises(DataError, match="split must be 'train' or 'test'"):
        FolderDataset(tmp_path, image_sizes=SIZES)
    path.write_text('{"image": "a.jpg", "caption": "ok", "split": "train"}\n'
                    '{"image": "gone.jpg", "caption": "lost", "split": "train"}\n')
    with pytest.raises(MissingImagesError, match=r"1 of 2 images .*gone\.jpg"):
        FolderDataset(tmp_path, image_sizes=SIZES)
    assert FolderDataset(tmp_path, image_sizes=SIZES, missing="skip").missing == ["gone.jpg"]


def test_csv_with_split_column_and_empty_image(tmp_path: Path) -> None:
    write_image(tmp_path / "x.jpg")
    write_image(tmp_path / "y.jpg", seed=1)
    (tmp_path / "z.jpg").write_bytes(b"")
    (tmp_path / "captions.csv").write_text(
        "image,caption,split\nx.jpg,\"a photo, with a comma\",train\nx.jpg,second caption,train\n"
        "y.jpg,held out,test\nz.jpg,empty file,train\n")
    with pytest.raises(DataError, match=r"z\.jpg: empty image file"):
        FolderDataset(tmp_path, image_sizes=SIZES)
    ds = FolderDataset(tmp_path, image_sizes=SIZES, skip_bad=True)
    assert [r.key for r in ds.records] == ["x"] and ds.captions_per_image == 2
    assert ds.caption_text(0, 0) == "a photo with a comma" and len(ds.skipped["empty_image"]) == 1
    (tmp_path / "captions.csv").write_text("file,text\nx.jpg,hello\n")
    with pytest.raises(DataError, match="columns 'image' and 'caption'"):
        FolderDataset(tmp_path, image_sizes=SIZES)


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    root = _pairs(tmp_path, 3)
    with pytest.raises(DataError, match="the test split is empty"):
        FolderDataset(root, "test", image_sizes=SIZES, test_fraction=0.0)
