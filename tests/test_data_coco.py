"""COCO in AttnGAN's layout and from the official caption annotations (tiny synthetic files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attngan.data import CocoDataset, CocoJsonDataset, DataError, MissingImagesError, build_dataset

from .test_data_common import write_image, write_pickle

SIZES = (16, 32)


def _attngan_coco(root: Path, folder_per_subset: bool = False, class_info: bool = False) -> Path:
    names = {"train": ["COCO_train2014_000000000009", "COCO_train2014_000000000025"],
             "test": ["COCO_val2014_000000000042"]}
    for split, group in names.items():
        write_pickle(root / split / "filenames.pickle", group)
        if class_info:
            write_pickle(root / split / "class_info.pickle", [7] * len(group))
        for k, name in enumerate(group):
            folder = root / (name.split("_")[1] if folder_per_subset else "images")
            write_image(folder / f"{name}.jpg", (50, 40), seed=k)
            lines = [f"a {split} picture {k} with a dog number {j}" for j in range(5)]
            (root / "text").mkdir(parents=True, exist_ok=True)
            (root / "text" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("folder_per_subset", [False, True])
def test_attngan_layout(tmp_path: Path, folder_per_subset: bool) -> None:
    root = _attngan_coco(tmp_path, folder_per_subset)
    ds = CocoDataset(root, "train", image_sizes=SIZES)
    assert len(ds) == 2 and ds.captions_per_image == 5
    assert [r.class_id for r in ds.records] == [0, 1] and ds.num_classes == 2  # no class_info: the index
    assert "test" in ds.vocab and "train" in ds.vocab
    item = ds[1]
    assert [tuple(t.shape) for t in item["images"]] == [(3, 16, 16), (3, 32, 32)]
    assert item["key"] == "COCO_train2014_000000000025"
    test = CocoDataset(root, "test", image_sizes=SIZES, vocab=ds.vocab)
    assert len(test) == 1 and test.caption_text(0, 4) == "a test picture 0 with a dog number 4"
    assert isinstance(build_dataset("coco", root, image_sizes=(16,)), CocoDataset)


def test_attngan_layout_class_info_and_missing(tmp_path: Path) -> None:
    root = _attngan_coco(tmp_path, class_info=True)
    assert [r.class_id for r in CocoDataset(root, image_sizes=SIZES).records] == [7, 7]
    (root / "images" / "COCO_train2014_000000000025.jpg").unlink()
    with pytest.raises(MissingImagesError, match="1 of 2 images"):
        CocoDataset(root, image_sizes=SIZES)
    assert CocoDataset(root, image_sizes=SIZES, missing="skip").missing == ["COCO_train2014_000000000025"]


def _official(root: Path) -> Path:
    def annotations(subset: str, images: dict[int, list[str]]) -> None:
        data = {"images": [{"id": i, "file_name": f"COCO_{subset}_{i:012d}.jpg"} for i in images],
                "annotations": [{"id": 100 * i + j, "image_id": i, "caption": c}
                                for i, caps in images.items() for j, c in reversed(list(enumerate(caps)))]}
        path = root / "annotations" / f"captions_{subset}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        for i in images:
            write_image(root / subset / f"COCO_{subset}_{i:012d}.jpg", (48, 36), seed=i)

    annotations("train2014", {30: [f"a cat on a sofa {j}" for j in range(6)],
                              12: [f"two dogs playing {j}" for j in range(5)]})
    annotations("val2014", {5: [f"a zebra grazing {j}" for j in range(5)]})
    return root


def test_official_json_groups_captions_by_image(tmp_path: Path) -> None:
    root = _official(tmp_path)
    ds = CocoJsonDataset(root, "train", image_sizes=SIZES, train=False)
    assert [r.key for r in ds.records] == ["COCO_train2014_000000000012", "COCO_train2014_000000000030"]
    assert [r.class_id for r in ds.records] == [0, 1]
    # the first five by annotation id, whatever the order in the file
    assert [ds.caption_text(1, j) for j in range(5)] == [f"a cat on a sofa {j}" for j in range(5)]
    assert "zebra" in ds.vocab and ds.vocab.words.index("cat") < ds.vocab.words.index("zebra")
    test = CocoJsonDataset(root, "test", image_sizes=SIZES)
    assert len(test) == 1 and test.vocab == ds.vocab and test[0]["caption_index"] == 0
    assert isinstance(build_dataset("coco-json", root, image_sizes=(16,)), CocoJsonDataset)


def test_official_json_problems(tmp_path: Path) -> None:
    root = _official(tmp_path)
    path = root / "annotations" / "captions_train2014.json"
    data = json.loads(path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 1204]  # image 12 keeps 4
    data["annotations"].append({"id": 3099, "image_id": 30, "caption": "ÉÉÉ"})
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="image 12 has 4 usable captions, 5 required"):
        CocoJsonDataset(root, image_sizes=SIZES)
    ds = CocoJsonDataset(root, image_sizes=SIZES, skip_bad=True)
    assert [r.key for r in ds.records] == ["COCO_train2014_000000000030"]
    assert len(ds.skipped["too_few_captions"]) == 1
    (root / "train2014" / "COCO_train2014_000000000030.jpg").unlink()
    with pytest.raises(MissingImagesError, match="1 of 2 images listed in .*captions_train2014.json"):
        CocoJsonDataset(root, image_sizes=SIZES, skip_bad=True)
    path.write_text("{not json")
    with pytest.raises(DataError, match="captions_train2014.json: not valid JSON"):
        CocoJsonDataset(root, image_sizes=SIZES)
    path.write_text(json.dumps({"images": [{"id": "x"}], "annotations": []}))
    with pytest.raises(DataError, match=r"images\[0\]"):
        CocoJsonDataset(root, image_sizes=SIZES)


def test_official_json_caption_without_words(tmp_path: Path) -> None:
    root = _official(tmp_path)
    path = root / "annotations" / "captions_val2014.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["caption"] = "!!!"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation \d+ \(image 5\): caption '!!!' has no ASCII word"):
        CocoJsonDataset(root, "test", image_sizes=SIZES)
