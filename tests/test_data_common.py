"""Shared data pieces: image decoding, transforms, cache, caption files, collate.

Also holds the small-file builders the other ``test_data_*`` modules use.
"""

from __future__ import annotations

import inspect
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from attngan.data import (
    DataError,
    ImageCache,
    bbox_crop_region,
    collate,
    dataset_kinds,
    image_tensors,
    open_rgb,
    read_caption_file,
)
from attngan.data.common import resize_short_edge, to_tensor

# --------------------------------------------------------------------------- builders


def write_image(path: Path, size: tuple[int, int] = (60, 40), mode: str = "RGB", fmt: str = "JPEG",
                seed: int = 0) -> Path:
    """A random-noise image file (smooth enough to survive JPEG)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(size[1] // 4 + 1, size[0] // 4 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize(size, Image.BILINEAR).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


def write_pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def captions(marker: str, count: int = 10) -> list[str]:
    return [f"the {marker} bird number {k} has a short beak" for k in range(count)]


def make_cub(root: Path, images: dict[str, dict], test: dict[str, dict] | None = None) -> Path:
    """AttnGAN's birds layout. ``images`` (train split) and ``test`` map a name such as
    ``001.A/a_1`` to options: ``lines`` (caption lines), ``size``, ``box`` (x, y, w, h),
    ``mode``, ``fmt``, ``raw`` (bytes to write instead of an image), ``absent``,
    ``no_text``."""
    test = test or {}
    cub = root / "CUB_200_2011"
    image_lines, box_lines = [], []
    for number, (name, spec) in enumerate({**images, **test}.items(), start=1):
        image = cub / "images" / f"{name}.jpg"
        if "raw" in spec:
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(spec["raw"])
        elif not spec.get("absent"):
            write_image(image, spec.get("size", (60, 40)), spec.get("mode", "RGB"), spec.get("fmt", "JPEG"), number)
        image_lines.append(f"{number} {name}.jpg")
        box_lines.append(f"{number} " + " ".join(str(float(v)) for v in spec.get("box", (5, 5, 30, 20))))
        if not spec.get("no_text"):
            text = root / "text" / f"{name}.txt"
            text.parent.mkdir(parents=True, exist_ok=True)
            text.write_text("\n".join(spec.get("lines", captions(name.split("/")[-1]))) + "\n", encoding="utf-8")
    cub.mkdir(parents=True, exist_ok=True)
    (cub / "images.txt").write_text("\n".join(image_lines) + "\n")
    (cub / "bounding_boxes.txt").write_text("\n".join(box_lines) + "\n")
    for split, group in (("train", images), ("test", test)):
        write_pickle(root / split / "filenames.pickle", list(group))
        write_pickle(root / split / "class_info.pickle", [int(n.split(".")[0]) for n in group])
    return root


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGB", "P"])
def test_open_rgb_converts_jpeg_modes(tmp_path: Path, mode: str) -> None:
    fmt = "PNG" if mode == "P" else "JPEG"
    path = write_image(tmp_path / f"x.{fmt.lower()}", (32, 24), mode, fmt)
    img = open_rgb(path)
    assert img.mode == "RGB" and img.size == (32, 24)
    if mode == "L":
        arr = np.asarray(img)
        assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def test_open_rgb_cmyk_keeps_colours(tmp_path: Path) -> None:
    path = tmp_path / "red.jpg"
    Image.new("RGB", (16, 16), (230, 20, 20)).convert("CMYK").save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    r, g, b = np.asarray(open_rgb(path)).reshape(-1, 3).mean(0)
    assert r > 180 and g < 70 and b < 70


def test_open_rgb_composites_alpha_over_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 255)  # opaque red left half, transparent black right half
    Image.fromarray(rgba, "RGBA").save(path)
    arr = np.asarray(open_rgb(path))
    assert tuple(arr[0, 0]) == (255, 0, 0) and tuple(arr[0, 7]) == (255, 255, 255)
    la = tmp_path / "la.png"
    Image.fromarray(np.full((4, 4, 2), (10, 0), np.uint8), "LA").save(la)
    assert tuple(np.asarray(open_rgb(la))[0, 0]) == (255, 255, 255)


def test_open_rgb_sixteen_bit_png(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(path)
    assert tuple(np.asarray(open_rgb(path))[0, 0]) == (255, 255, 255)


def test_open_rgb_errors_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.jpg.*0 bytes"):
        open_rgb(empty)
    good = write_image(tmp_path / "good.jpg", (64, 64))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated\.jpg"):
        open_rgb(truncated)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image at all")
    with pytest.raises(DataError, match=r"junk\.jpg: not a readable image"):
        open_rgb(junk)
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        open_rgb(tmp_path / "absent.jpg")


# --------------------------------------------------------------------------- transforms


def test_bbox_crop_region_follows_the_original_formula() -> None:
    x, y, w, h = 60.0, 27.0, 325.0, 304.0
    r = int(max(w, h) * 0.75)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    assert bbox_crop_region((x, y, w, h), 500, 400) == (max(0, cx - r), max(0, cy - r), min(500, cx + r), min(400, cy + r))
    assert bbox_crop_region((10, 10, 20, 20), 100, 100) == (5, 5, 35, 35)
    with pytest.raises(ValueError, match="outside"):
        bbox_crop_region((500, 500, 10, 10), 100, 100)


def test_resize_and_center_crop_match_torchvision() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, size=(90, 130, 3), dtype=np.uint8))
    ours = np.asarray(resize_short_edge(img, 76))
    theirs = np.asarray(transforms.Resize(76)(img))
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
    loaded = np.asarray(resize_short_edge(img, 64))
    tensors = image_tensors(loaded, (32, 64), train=False, rng=None)
    pipeline = transforms.Compose([transforms.Resize(64), transforms.CenterCrop(64), transforms.ToTensor(),
                                   transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    assert torch.allclose(tensors[1], pipeline(img), atol=1e-6)
    small = transforms.Compose([transforms.Resize(32), transforms.ToTensor(),
                                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    crop = transforms.CenterCrop(64)(transforms.Resize(64)(img))
    assert torch.allclose(tensors[0], small(crop), atol=1e-6)


def test_train_crops_are_reproducible_and_flip() -> None:
    image = np.random.default_rng(1).integers(0, 256, size=(76, 90, 3), dtype=np.uint8)
    a = image_tensors(image, (64,), True, np.random.default_rng(7))[0]
    b = image_tensors(image, (64,), True, np.random.default_rng(7))[0]
    assert torch.equal(a, b) and a.shape == (3, 64, 64)
    crops = {image_tensors(image, (64,), True, np.random.default_rng(s))[0].sum().item() for s in range(10)}
    assert len(crops) > 5
    assert torch.equal(to_tensor(np.full((2, 2, 3), 255, np.uint8)), torch.ones(3, 2, 2))
    assert torch.equal(to_tensor(np.zeros((2, 2, 3), np.uint8)), -torch.ones(3, 2, 2))


# --------------------------------------------------------------------------- cache


def test_image_cache_memory_and_disk(tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.jpg")
    calls: list[int] = []

    def decode() -> np.ndarray:
        calls.append(1)
        return np.full((4, 4, 3), len(calls), np.uint8)

    cache = ImageCache(tmp_path / "cache")
    first = cache.get(image, 76, None, decode)
    assert cache.get(image, 76, None, decode) is first and len(calls) == 1
    fresh = ImageCache(tmp_path / "cache")  # a new process: reads the .npy
    assert np.array_equal(fresh.get(image, 76, None, decode), first) and len(calls) == 1
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    fresh.get(image, 64, None, decode)  # another load size is another entry
    assert len(calls) == 2
    os.utime(image, ns=(0, 0))  # a changed file is decoded again
    ImageCache(tmp_path / "cache").get(image, 76, None, decode)
    assert len(calls) == 3
    tiny = ImageCache(None, memory_mb=0)
    tiny.get(image, 76, None, decode)
    assert len(tiny) == 0


# --------------------------------------------------------------------------- captions


def test_read_caption_file_rules(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_bytes(b"a red bird\r\nA Blue BIRD.\n\n\n")
    got = read_caption_file(path, 2, skip_bad=False)
    assert got.tokens == [["a", "red", "bird"], ["a", "blue", "bird"]] and got.lines == [1, 2]
    path.write_text("one bird\n\ntwo birds\nthree birds\n")
    with pytest.raises(DataError, match=r"c\.txt:2: empty line"):
        read_caption_file(path, 3, skip_bad=False)
    got = read_caption_file(path, 3, skip_bad=True)
    assert got.lines == [1, 3, 4] and got.bad == [f"{path}:2: empty line"]
    with pytest.raises(DataError, match=r"c\.txt: 3 usable captions, 5 required \(1 unusable"):
        read_caption_file(path, 5, skip_bad=True)
    path.write_text("fine words\n日本語\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.txt:2: no ASCII word"):
        read_caption_file(path, 2, skip_bad=False)
    path.write_bytes(b"caf\xe9 bird\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_caption_file(path, 1, skip_bad=False)
    assert read_caption_file(path, 1, skip_bad=True).tokens == [["caf", "bird"]]
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        read_caption_file(tmp_path / "nothing.txt", 1, skip_bad=False)


# --------------------------------------------------------------------------- collate


def _item(length: int, key: str, attributes: bool) -> dict:
    tokens = torch.zeros(18, dtype=torch.int64)
    tokens[:length] = torch.arange(1, length + 1)
    item = {"images": [torch.zeros(3, 8, 8), torch.zeros(3, 16, 16)], "tokens": tokens, "length": length,
            "class_id": length * 10, "key": key, "caption_index": 1}
    if attributes:
        item["attributes"] = torch.tensor([length, 0])
    return item


def test_collate_trims_tokens_to_the_longest_caption() -> None:
    batch = collate([_item(3, "a", True), _item(7, "b", True)])
    assert [tuple(t.shape) for t in batch["images"]] == [(2, 3, 8, 8), (2, 3, 16, 16)]
    assert batch["tokens"].shape == (2, 7) and batch["lengths"].tolist() == [3, 7]
    assert batch["tokens"][0].tolist() == [1, 2, 3, 0, 0, 0, 0]
    assert batch["class_ids"].tolist() == [30, 70] and batch["keys"] == ["a", "b"]
    assert batch["caption_indices"].dtype == torch.int64 and batch["attributes"].shape == (2, 2)
    assert "attributes" not in collate([_item(2, "c", False)])
    with pytest.raises(ValueError):
        collate([])


def test_every_kind_accepts_the_common_arguments() -> None:
    common = {"split", "image_sizes", "max_words", "train", "seed", "skip_bad", "vocab", "missing", "cache_dir",
              "captions_per_image"}
    for kind, cls in dataset_kinds().items():
        names = set(inspect.signature(cls.__init__).parameters)
        assert common <= names, (kind, common - names)
