"""The attribute classifier learns a synthetic task, saves/loads without pickle, and scores images."""

from __future__ import annotations

import json

import pytest
import torch

from attngan.metrics.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    attribute_accuracy,
    load_classifier,
    save_classifier,
    train_attribute_classifier,
)

COLOURS = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])  # red, green, blue


def square(colour: int, position: int, size: int = 16, noise: torch.Tensor | None = None) -> torch.Tensor:
    """A 6x6 square of ``colour`` in quadrant ``position`` on a grey background, ``[3, S, S]`` in [-1, 1]."""
    image = torch.full((3, size, size), -0.5)
    top, left = (position // 2) * size // 2 + 1, (position % 2) * size // 2 + 1
    image[:, top:top + 6, left:left + 6] = COLOURS[colour][:, None, None]
    if noise is not None:
        image = (image + noise).clamp(-1, 1)
    return image


class Squares(torch.utils.data.Dataset):
    """Items like the project's data sets: per-stage ``images`` and int64 ``attributes``.

    As in multi-object scenes, ``attributes`` has a second, absent (-1) object slot.
    """

    attribute_names = ("colour", "position")
    attribute_values = (("red", "green", "blue"), ("top left", "top right", "bottom left", "bottom right"))

    def __init__(self, count: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.attributes = torch.stack([torch.randint(0, 3, (count,), generator=g),
                                       torch.randint(0, 4, (count,), generator=g)], dim=1)
        noise = torch.randn(count, 3, 16, 16, generator=g) * 0.1
        self.images = torch.stack([square(int(c), int(p), noise=n) for (c, p), n in zip(self.attributes, noise)])
        self.attributes = torch.cat([self.attributes, torch.full((count, 2), -1)], dim=1)
        self.small = torch.nn.functional.avg_pool2d(self.images, 2)

    def __len__(self) -> int:
        return len(self.attributes)

    def __getitem__(self, i: int) -> dict:
        return {"images": [self.small[i], self.images[i]], "attributes": self.attributes[i], "key": f"sq{i}",
                "class_id": 0}

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images, self.attributes


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def trained() -> AttributeClassifier:
    torch.manual_seed(0)
    return train_attribute_classifier(Squares(256, seed=0), channels=8, feature_dim=32, epochs=3, batch_size=32)


def test_classifier_learns_colour_and_position(trained: AttributeClassifier) -> None:
    images, attributes = Squares(200, seed=1).stacked()
    acc = attribute_accuracy(trained, images, attributes)
    assert set(acc) == {"accuracy_colour", "accuracy_position", "accuracy_all"}
    # chance: 1/3 for colour, 1/4 for position, 1/12 for both
    assert acc["accuracy_colour"] > 0.9 and acc["accuracy_position"] > 0.9 and acc["accuracy_all"] > 0.85
    assert trained.config.image_size == 16 and trained.config.attribute_names == ("colour", "position")
    assert not trained.training


def test_wrong_attributes_score_low(trained: AttributeClassifier) -> None:
    images, attributes = Squares(120, seed=2).stacked()
    wrong = attributes.clone()
    wrong[:, 0] = (wrong[:, 0] + 1) % 3
    acc = attribute_accuracy(trained, images, wrong)
    assert acc["accuracy_colour"] < 0.2 and acc["accuracy_all"] < 0.2


def test_save_load_round_trip(tmp_path, trained: AttributeClassifier) -> None:
    folder = save_classifier(trained, tmp_path / "clf", metadata={"dataset": "squares"})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_classifier(folder)
    images, _ = Squares(16, seed=3).stacked()
    torch.testing.assert_close(loaded.features(images), trained.features(images))
    assert loaded.config == trained.config
    assert loaded.metadata["dataset"] == "squares" and "train_accuracy_all" in loaded.metadata


def test_load_errors_name_the_file(tmp_path, trained: AttributeClassifier) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_classifier(tmp_path / "nothing")
    folder = save_classifier(trained, tmp_path / "clf")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_classifier(folder)
    (folder / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="config.json"):
        load_classifier(folder)


def test_config_and_input_checks() -> None:
    with pytest.raises(ValueError, match="num_values_per_attribute"):
        ClassifierConfig((3, 1))
    with pytest.raises(ValueError, match="attribute_names"):
        ClassifierConfig((3, 4), ("one",))
    model = AttributeClassifier(ClassifierConfig((2, 5), image_size=32, channels=4, feature_dim=8))
    assert [t.shape for t in model(torch.zeros(3, 3, 64, 64))] == [(3, 2), (3, 5)]  # resized to 32
    with pytest.raises(ValueError, match=r"\[3, 2\]"):
        attribute_accuracy(model, torch.zeros(3, 3, 32, 32), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="negative"):
        attribute_accuracy(model, torch.zeros(3, 3, 32, 32), torch.full((3, 2), -1))
