"""Modules at the published bird configuration have exactly the original's keys and shapes."""

from __future__ import annotations

import json

import pytest
import torch

from attngan.config import DiscriminatorConfig, bird_config
from attngan.hub import legacy
from attngan.models import Discriminator, Generator, InceptionImageEncoder, TextEncoder

from .conftest import GOLDEN, require_golden


def expected(name: str) -> dict[str, tuple[list[int], str]]:
    path = require_golden(GOLDEN / "state_dict_keys" / f"{name}.json")
    return {k: (shape, dtype) for k, shape, dtype in json.loads(path.read_text())}


def actual(state: dict[str, torch.Tensor]) -> dict[str, tuple[list[int], str]]:
    return {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}


def check(name: str, module: torch.nn.Module, rules: list) -> None:
    ours = actual(legacy.to_legacy(module.state_dict(), rules))
    want = expected(name)
    assert sorted(set(want) - set(ours)) == [], "missing keys"
    assert sorted(set(ours) - set(want)) == [], "extra keys"
    wrong = {k: (ours[k], want[k]) for k in want if ours[k] != want[k]}
    assert wrong == {}
    # the conversion is a bijection: back to our names gives the module's keys
    assert set(legacy.from_legacy(legacy.to_legacy(module.state_dict(), rules), rules)) == set(module.state_dict())


def test_text_encoder_keys() -> None:
    check("RNN_ENCODER", TextEncoder(bird_config().text_encoder), legacy.TEXT_ENCODER_RULES)


def test_generator_keys() -> None:
    check("G_NET", Generator(bird_config().generator), legacy.GENERATOR_RULES)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_discriminator_keys(size: int) -> None:
    disc = Discriminator(DiscriminatorConfig(image_size=size, channels=64, text_dim=256))
    check(f"D_NET{size}", disc, legacy.discriminator_rules(size))


def test_image_encoder_keys() -> None:
    config = bird_config().image_encoder
    assert config is not None
    check("CNN_ENCODER", InceptionImageEncoder(config), legacy.IMAGE_ENCODER_RULES)


def test_parameter_counts() -> None:
    counts = json.loads(require_golden(GOLDEN / "state_dict_keys" / "param_counts.json").read_text())
    cfg = bird_config()
    modules = {"RNN_ENCODER": TextEncoder(cfg.text_encoder), "G_NET": Generator(cfg.generator),
               "D_NET256": Discriminator(DiscriminatorConfig(image_size=256))}
    for name, module in modules.items():
        assert sum(p.numel() for p in module.parameters()) == counts[name]["params"], name


@pytest.mark.parametrize("size", [16, 32])
def test_small_discriminators_reach_a_4x4_map(size: int) -> None:
    disc = Discriminator(DiscriminatorConfig(image_size=size, channels=4, text_dim=8))
    features = disc(torch.randn(2, 3, size, size))
    assert features.shape == (2, 32, 4, 4)
    cond, uncond = disc.logits(features, torch.randn(2, 8))
    assert cond.shape == (2,) and uncond is not None and uncond.shape == (2,)
