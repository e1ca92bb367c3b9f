"""A small multi-head CNN attribute classifier, trained on real images, to score generated ones.

Each attribute (e.g. hair / eye colour) has its own softmax head over a shared network:
``arch="global"`` (a CNN over the whole image), or ``arch="slots"`` (one reading per image
region; the shapes scene classifier of :mod:`attngan.metrics.scenes`, see
:mod:`attngan.metrics.slot_network`). Folders hold ``config.json`` + ``model.safetensors``.

The training set only needs ``len(dataset)`` and items that are mappings with ``images``
(a list of per-stage ``[3, S, S]`` tensors in [-1, 1], the last one is used, or a single
tensor) and ``attributes`` (int64 ``[K]``, or longer: only the first K columns are used;
-1 marks a value that is not there, which no head is trained or scored on). The number of
values of each attribute comes from the argument, ``dataset.num_values_per_attribute`` or
the lengths of ``dataset.attribute_values``; names from ``dataset.attribute_names``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..files import read_format_json, staged_dir, write_safetensors
from .slot_network import SlotNetwork

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "attngan-attribute-classifier"
FORMAT_VERSION = 2  # 2: ClassifierConfig.arch and the slot network


@dataclass(frozen=True)
class ClassifierConfig:
    """Heads (values per attribute, names) and network of an :class:`AttributeClassifier`.

    ``arch``: ``"global"`` (a CNN over the whole image, one linear head per attribute) or
    ``"slots"`` (a :class:`~attngan.metrics.slot_network.SlotNetwork` reading one region per
    entry of ``cells``; heads ``[background, then per cell occupied, shape, colour, size]``,
    ``channels`` / ``feature_dim`` per cell, and ``colour_dim``, ``crop_size``, ``context``,
    ``mask_low``, ``mask_high`` as there).
    """

    num_values_per_attribute: tuple[int, ...]
    attribute_names: tuple[str, ...] = ()
    image_size: int = 64  # input resolution; other sizes are resized to it
    channels: int = 32  # width of the first conv layer
    feature_dim: int = 128  # penultimate features (used for the in-domain Fréchet distance)
    arch: str = "global"
    cells: tuple[tuple[float, float, float, float], ...] = ()
    colour_dim: int = 16
    crop_size: int = 28
    context: float = 0.15
    mask_low: float = 0.2
    mask_high: float = 0.5

    def __post_init__(self) -> None:
        values = tuple(int(v) for v in self.num_values_per_attribute)
        if not values or min(values) < 2:
            raise ValueError(f"num_values_per_attribute needs entries >= 2, got {self.num_values_per_attribute}")
        names = tuple(self.attribute_names) or tuple(f"attribute_{i}" for i in range(len(values)))
        if len(names) != len(values):
            raise ValueError(f"{len(names)} attribute_names for {len(values)} attributes")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ValueError(f"classifier image_size must be a power of two >= 8, got {self.image_size}")
        if self.arch not in ("global", "slots"):
            raise ValueError(f"classifier arch must be 'global' or 'slots', got {self.arch!r}")
        cells = tuple(tuple(float(v) for v in cell) for cell in self.cells)
        if self.arch == "slots" and (not cells or any(len(c) != 4 for c in cells) or self.crop_size % 4):
            raise ValueError("a 'slots' classifier needs cells of (x0, y0, x1, y1) and a crop_size divisible by 4")
        object.__setattr__(self, "num_values_per_attribute", values)
        object.__setattr__(self, "attribute_names", names)
        object.__setattr__(self, "cells", cells)


class AttributeClassifier(nn.Module):
    """One head per attribute over a shared network: ``"global"``, a strided CNN to a 4x4 map
    and a linear feature layer; ``"slots"``, a :class:`~attngan.metrics.slot_network.SlotNetwork`."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.metadata: dict[str, Any] = {}
        if config.arch == "slots":
            self.slots = SlotNetwork(config.cells, config.num_values_per_attribute, config.channels,
                                     config.feature_dim, config.colour_dim, config.crop_size, config.context,
                                     config.mask_low, config.mask_high)
            self.num_features = self.slots.feature_dim
            return
        c = config.channels
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        width = c
        for i in range(int(math.log2(config.image_size // 4))):
            out = c * 2 ** min(i + 1, 3)
            layers += [nn.Conv2d(width, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, inplace=True)]
            width = out
        self.trunk = nn.Sequential(*layers)
        self.to_features = nn.Sequential(nn.Flatten(), nn.Linear(width * 16, config.feature_dim), nn.ReLU(inplace=True))
        self.heads = nn.ModuleList([nn.Linear(config.feature_dim, k) for k in config.num_values_per_attribute])
        self.num_features = config.feature_dim

    def _resized(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            # antialiased resizing has no bf16 kernel on CPU: it runs in fp32
            images = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > size)
        return images

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> penultimate features ``[N, num_features]``."""
        images = self._resized(images)
        if self.config.arch == "slots":
            return self.slots.features(images)
        return self.to_features(self.trunk(images))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[N, 3, H, W]`` in [-1, 1] -> per attribute logits ``[N, K_a]``."""
        if self.config.arch == "slots":
            return self.slots(self._resized(images))
        feats = self.features(images)
        return [head(feats) for head in self.heads]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> predicted value indices ``[N, A]`` int64."""
        return torch.stack([logits.argmax(1) for logits in self(images)], dim=1)


def _image_of(item: Mapping[str, Any]) -> torch.Tensor:
    images = item["images"]
    image = images[-1] if isinstance(images, Sequence) else images
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3:
        raise ValueError(f"expected an image [3, S, S], got shape {tuple(image.shape)}")
    return image


def _values_of(dataset: Any) -> tuple[int, ...] | None:
    values = getattr(dataset, "num_values_per_attribute", None)
    if values is None and getattr(dataset, "attribute_values", None):
        values = tuple(len(v) for v in dataset.attribute_values)
    return tuple(values) if values is not None else None


def _collate(items: list[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([_image_of(it) for it in items]).float()
    attributes = torch.stack([torch.as_tensor(it["attributes"]) for it in items]).to(torch.int64)
    return images, attributes


def train_attribute_classifier(
    dataset: Any,
    num_values_per_attribute: Sequence[int] | None = None,
    attribute_names: Sequence[str] | None = None,
    image_size: int | None = None,
    channels: int = 32,
    feature_dim: int = 128,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_steps: int | None = None,
    lr_schedule: str = "constant",
    **network: Any,
) -> AttributeClassifier:
    """Train an :class:`AttributeClassifier` on a data set of real images (see the module docstring).

    ``image_size`` defaults to the size of the first item's last-stage image (a power of
    two; otherwise 64). ``lr_schedule``: ``"constant"`` or ``"cosine"`` (decays to zero
    over the run's steps, which steadies the last epochs). Training is deterministic for
    a given ``seed`` on the CPU. ``network``: further :class:`ClassifierConfig` fields (``arch``,
    ``cells``, ...).
    Returns the classifier in eval mode; ``metadata`` holds the training settings and the
    final training-set accuracy.
    """
    values = num_values_per_attribute or _values_of(dataset)
    if values is None:
        raise ValueError("pass num_values_per_attribute (the data set has neither num_values_per_attribute "
                         "nor attribute_values)")
    names = attribute_names or getattr(dataset, "attribute_names", None) or ()
    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    if len(dataset) == 0:
        raise ValueError("the training data set is empty")
    if image_size is None:
        size = int(_image_of(dataset[0]).shape[-1])
        image_size = size if size >= 8 and size & (size - 1) == 0 else 64
    config = ClassifierConfig(tuple(values), tuple(names), image_size, channels, feature_dim, **network)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = AttributeClassifier(config).to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=_collate,
                                         generator=generator, drop_last=len(dataset) > batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    total_steps = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(total_steps, 1))
                 if lr_schedule == "cosine" else None)
    steps, start = 0, time.monotonic()
    model.train()
    loss = torch.zeros(())
    for epoch in range(epochs):
        total, correct = 0, 0
        for images, attributes in loader:
            images, attributes = images.to(device), attributes[:, :len(config.num_values_per_attribute)].to(device)
            logits = model(images)
            terms = [F.cross_entropy(lg, attributes[:, i], ignore_index=-1) for i, lg in enumerate(logits)]
            loss = terms[0]
            for term in terms[1:]:
                loss = loss + term
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            with torch.no_grad():
                pred = torch.stack([lg.argmax(1) for lg in logits], dim=1)
                correct += int(((pred == attributes) | (attributes < 0)).all(dim=1).sum())
                total += images.shape[0]
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        logger.info("classifier epoch %d: loss %.4f, all-attributes train accuracy %.3f",
                    epoch + 1, float(loss.detach()), correct / max(total, 1))
        if max_steps is not None and steps >= max_steps:
            break
    model.eval()
    model.metadata = {"epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr,
                      "lr_schedule": lr_schedule, "seed": seed,
                      "train_samples": len(dataset), "train_accuracy_all": correct / max(total, 1),
                      "train_seconds": round(time.monotonic() - start, 2)}
    return model


def save_classifier(classifier: AttributeClassifier, path: str | os.PathLike[str],
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into folder ``path``, replacing it whole
    (a crash leaves the previous folder or none, never a mix)."""
    path = Path(path)
    meta = {**getattr(classifier, "metadata", {}), **(metadata or {})}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": asdict(classifier.config), "metadata": meta}
    state = {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()}
    with staged_dir(path) as tmp:
        write_safetensors(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return path


def load_classifier(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> AttributeClassifier:
    """Load a folder written by :func:`save_classifier` (eval mode); errors name the file at fault."""
    path = Path(path)
    file = path / CONFIG_NAME
    data = read_format_json(file, FORMAT, "an attribute-classifier folder")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{file} has format_version {data['format_version']}; this version reads up to {FORMAT_VERSION}")
    try:
        config = ClassifierConfig(**data["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: invalid classifier config ({exc})") from None
    model = AttributeClassifier(config)
    weights = path / WEIGHTS_NAME
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{weights} not found") from None
    except Exception as exc:  # safetensors and load_state_dict errors
        raise ValueError(f"{weights} does not fit {file}: {str(exc)[:300]}") from None
    model.metadata = dict(data.get("metadata") or {})
    return model.to(device).eval()


@torch.no_grad()
def predict_attributes(classifier: AttributeClassifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``[N, K]`` int64: the classifier's value of each attribute for ``images [N, 3, S, S]`` in [-1, 1]."""
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    try:
        preds = [classifier.predict(images[i:i + batch_size].to(device)).cpu()
                 for i in range(0, images.shape[0], batch_size)]
    finally:
        classifier.train(was_training)
    if not preds:
        return torch.zeros(0, len(classifier.config.attribute_names), dtype=torch.int64)
    return torch.cat(preds).to(torch.int64)


def confusion_counts(wanted: torch.Tensor, read: torch.Tensor, num_values: int) -> torch.Tensor:
    """``[V, V + 1]`` int64 counts of (wanted value, read value) pairs from ``wanted [N]`` and
    ``read [N]`` (a read value outside ``0 .. V-1`` counts in the last column: nothing read)."""
    wanted, read = wanted.reshape(-1).to(torch.int64), read.reshape(-1).to(torch.int64)
    if wanted.shape != read.shape or bool(((wanted < 0) | (wanted >= num_values)).any()):
        raise ValueError(f"wanted must hold values 0..{num_values - 1}, one per read value")
    read = torch.where((read < 0) | (read >= num_values), num_values, read)
    counts = torch.zeros(num_values, num_values + 1, dtype=torch.int64)
    counts.index_put_((wanted, read), torch.ones_like(wanted), accumulate=True)
    return counts


@torch.no_grad()
def attribute_hits(classifier: AttributeClassifier, images: torch.Tensor, attributes: torch.Tensor,
                   batch_size: int = 256) -> torch.Tensor:
    """``[N, K]`` bool: where the classifier's prediction on ``images [N, 3, S, S]`` equals ``attributes [N, K]``.

    Longer attribute rows (multi-object scenes) are cut to their first K columns.
    """
    names = classifier.config.attribute_names
    if attributes.dim() != 2 or attributes.shape[1] < len(names) or attributes.shape[0] != images.shape[0]:
        raise ValueError(f"attributes must be [{images.shape[0]}, {len(names)}], got {tuple(attributes.shape)}")
    attributes = attributes[:, :len(names)]
    if (attributes < 0).any():
        raise ValueError("attributes hold negative (missing) values in the scored columns")
    return predict_attributes(classifier, images, batch_size) == attributes.cpu().to(torch.int64)


def summarise_attribute_hits(hits: torch.Tensor, attribute_names: Sequence[str]) -> dict[str, float]:
    """``{"accuracy_<name>": ..., "accuracy_all": ...}`` from hits ``[N, K]`` bool."""
    if hits.dim() != 2 or hits.shape[0] == 0 or hits.shape[1] != len(attribute_names):
        raise ValueError(f"hits must be [N >= 1, {len(attribute_names)}], got {tuple(hits.shape)}")
    out = {f"accuracy_{name}": float(hits[:, i].double().mean()) for i, name in enumerate(attribute_names)}
    out["accuracy_all"] = float(hits.all(dim=1).double().mean())
    return out


def attribute_accuracy(classifier: AttributeClassifier, images: torch.Tensor, attributes: torch.Tensor,
                       batch_size: int = 256) -> dict[str, float]:
    """Accuracy of the classifier's predictions on images against the attributes they should show.

    Args:
        images: ``[N, 3, S, S]`` in [-1, 1] (e.g. generated from captions with known attributes).
        attributes: ``[N, K]`` int64 attribute value indices.
    Returns:
        ``{"accuracy_<name>": ..., ..., "accuracy_all": fraction with every attribute right}``.
    """
    hits = attribute_hits(classifier, images, attributes, batch_size)
    return summarise_attribute_hits(hits, classifier.config.attribute_names)
