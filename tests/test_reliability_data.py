"""Data faults beyond those of ``test_data_*``: damaged bounding-box tables, image faults in a
second loader and inside a training run, and a DAMSM vocabulary that does not fit the data.

(Covered elsewhere: missing, zero-byte and truncated JPEGs, PNG with alpha, CMYK and
greyscale images, boxes outside the image, short caption files, empty and non-ASCII lines
-- ``test_data_cub.py``, ``test_data_common.py``, ``test_data_folder.py``, ``test_data_tags.py``.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from attngan.config import ImageEncoderConfig, TextEncoderConfig
from attngan.data import CubDataset, DataError, FolderDataset, ShapesDataset
from attngan.data.shapes import shapes_vocabulary
from attngan.hub import DAMSMEncoders, save_damsm
from attngan.models.image_encoder import build_image_encoder
from attngan.models.text_encoder import TextEncoder
from attngan.text import Vocabulary
from attngan.training.distributed import DistInfo
from attngan.training.gan import GANTrainer
from attngan.training.options import resolve_config

from .test_data_common import make_cub, write_image

SIZES = (16, 32)
SPECS = {"001.A/a_1": {}, "001.A/a_2": {}, "002.B/b_1": {}, "002.B/b_2": {}}

# --------------------------------------------------------------------------- bounding boxes


@pytest.mark.parametrize("line, message", [
    ("3 5.0 five 30.0 20.0", r"bounding_boxes\.txt:3: expected 'id x y w h', got '3 5\.0 five"),
    ("3 5.0 5.0 30.0", r"bounding_boxes\.txt:3: expected 5 fields, got 4"),
    ("77 5.0 5.0 30.0 20.0", r"bounding_boxes\.txt:3: image id 77 is not in .*images\.txt"),
])
def test_damaged_bounding_box_table_names_the_line(tmp_path: Path, line: str, message: str) -> None:
    root = make_cub(tmp_path, SPECS)
    boxes = root / "CUB_200_2011" / "bounding_boxes.txt"
    rows = boxes.read_text().splitlines()
    rows[2] = line
    boxes.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=message):
        CubDataset(root, image_sizes=SIZES)


def test_image_without_a_bounding_box(tmp_path: Path) -> None:
    root = make_cub(tmp_path, SPECS)
    boxes = root / "CUB_200_2011" / "bounding_boxes.txt"
    boxes.write_text("\n".join(boxes.read_text().splitlines()[:3]) + "\n")
    with pytest.raises(DataError, match=r"002\.B/b_2: no bounding box in .*bounding_boxes\.txt"):
        CubDataset(root, image_sizes=SIZES)
    ds = CubDataset(root, image_sizes=SIZES, skip_bad=True)
    assert len(ds) == 3 and len(ds.skipped["no_bbox"]) == 1


# --------------------------------------------------------------------------- images, second loader


def _folder(root: Path, bad: bytes | None) -> Path:
    for k in range(4):
        write_image(root / f"img{k}.jpg", (40, 40), seed=k)
        (root / f"img{k}.txt").write_text(f"a picture number {k}\nanother caption {k}\n")
    if bad is not None:
        (root / "img2.jpg").write_bytes(bad)
    return root


@pytest.mark.parametrize("fault", ["truncated", "not-an-image", "zero-bytes"])
def test_folder_loader_image_faults(tmp_path: Path, fault: str) -> None:
    good = write_image(tmp_path / "good.jpg", (40, 40)).read_bytes()
    bad = {"truncated": good[: len(good) // 3], "not-an-image": b"<html>not found</html>", "zero-bytes": b""}[fault]
    root = _folder(tmp_path / "data", bad)
    message = {"truncated": "cannot decode image", "not-an-image": "not a readable image",
               "zero-bytes": "empty image file"}[fault]
    if fault == "zero-bytes":  # found while listing
        with pytest.raises(DataError, match=rf"img2\.jpg.*{message}"):
            FolderDataset(root, image_sizes=SIZES, test_fraction=0.0)
        ds = FolderDataset(root, image_sizes=SIZES, test_fraction=0.0, skip_bad=True)
        assert len(ds) == 3 and sum(len(v) for v in ds.skipped.values()) == 1
        return
    ds = FolderDataset(root, image_sizes=SIZES, test_fraction=0.0, train=False)
    index = next(i for i, r in enumerate(ds.records) if r.key.startswith("img2"))
    with pytest.raises(DataError, match=rf"img2\.jpg: {message}"):
        ds[index]
    lenient = FolderDataset(root, image_sizes=SIZES, test_fraction=0.0, train=False, skip_bad=True)
    assert lenient[index]["key"] != ds.records[index].key
    assert "img2.jpg" in lenient.skipped["unreadable_image"][0]


# --------------------------------------------------------------------------- faults met while training


def _tiny_damsm_args(out: Path, root: Path, skip_bad: bool) -> list[str]:
    return ["text_encoder.word_embedding_dim=8", "text_encoder.hidden_dim=8", "image_encoder.image_size=32",
            "image_encoder.light_channels=4", "image_encoder.embedding_dim=8", "data.kind=cub", f"data.root={root}",
            "data.extra={use_bbox: false}", "data.counterfactual_kinds={}", f"data.skip_bad={str(skip_bad).lower()}", "run.batch_size=2",
            "run.max_steps=2", "run.log_every=1", "run.checkpoint_every=1", "run.threads=1", f"run.out_dir={out}"]


def test_a_truncated_image_met_during_training(tmp_path: Path) -> None:
    from attngan.training.damsm import train_damsm

    good = write_image(tmp_path / "good.jpg", (60, 40)).read_bytes()
    root = make_cub(tmp_path / "cub", {**SPECS, "002.B/b_2": {"raw": good[: len(good) // 4]}})
    cfg = resolve_config("damsm", "shapes", _tiny_damsm_args(tmp_path / "strict", root, False))
    with pytest.raises(DataError, match=r"b_2\.jpg: cannot decode image"):
        train_damsm(cfg)
    cfg = resolve_config("damsm", "shapes", _tiny_damsm_args(tmp_path / "lenient", root, True))
    assert (train_damsm(cfg) / "model.safetensors").exists()


# --------------------------------------------------------------------------- DAMSM vocabulary vs data


def _damsm_folder(path: Path, vocab: Vocabulary) -> Path:
    te = TextEncoder(TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=8, hidden_dim=8))
    ie = build_image_encoder(ImageEncoderConfig(kind="light", embedding_dim=8, image_size=32, light_channels=4))
    return save_damsm(DAMSMEncoders(te, ie, vocab, {"steps": 0}), path)


def _trainer(tmp_path: Path, damsm: Path, data: list[str]) -> GANTrainer:
    sets = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "generator.num_stages=2",
            "generator.first_stage_size=16", "discriminator.channels=8", "run.batch_size=2", "run.threads=1",
            f"run.out_dir={tmp_path / 'run'}", f"damsm={damsm}", *data]
    return GANTrainer(resolve_config("gan", "shapes", sets), DistInfo())


def test_damsm_trained_on_other_data_is_refused(tmp_path: Path) -> None:
    root = make_cub(tmp_path / "cub", SPECS)
    cub = ["data.kind=cub", f"data.root={root}", "data.extra={use_bbox: false}", "data.counterfactual_kinds={}"]
    shapes_damsm = _damsm_folder(tmp_path / "shapes-damsm", shapes_vocabulary())
    with pytest.raises(ValueError, match=r"vocabulary mismatch: \d+% of the data set's words are not in "
                                         rf"{shapes_damsm / 'vocab.json'} \(most frequent: .*bird"):
        _trainer(tmp_path, shapes_damsm, cub)

    cub_vocab = CubDataset(root, image_sizes=SIZES).vocab
    cub_damsm = _damsm_folder(tmp_path / "cub-damsm", cub_vocab)
    with pytest.raises(ValueError, match=r"vocabulary mismatch: .* are not in .*cub-damsm/vocab\.json"):
        _trainer(tmp_path, cub_damsm, ["data.kind=shapes", "data.extra={size: 8}"])
    assert _trainer(tmp_path, cub_damsm, cub).data.unknown_words == {}


def test_a_few_unknown_words_are_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_cub(tmp_path / "cub", SPECS)
    words = [w for w in CubDataset(root, image_sizes=SIZES).vocab.words if w != "a_2"]
    damsm = _damsm_folder(tmp_path / "damsm", Vocabulary(words))
    with caplog.at_level(logging.WARNING):
        trainer = _trainer(tmp_path, damsm, ["data.kind=cub", f"data.root={root}", "data.extra={use_bbox: false}",
                                             "data.counterfactual_kinds={}"])
    assert trainer.data.unknown_words == {"a_2": 10}
    assert "3% of the data set's words are not in" in caplog.text and "a_2" in caplog.text


def test_shapes_with_its_own_vocabulary_has_no_unknown_words() -> None:
    assert ShapesDataset(size=4).unknown_words == {}
    partial = Vocabulary([w for w in shapes_vocabulary().words if w != "circle"])
    assert ShapesDataset(size=4, vocab=partial).unknown_words == {"circle": 1}
