"""Conditioning augmentation: the noise scale (``generator.condition_noise``) and its plumbing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attngan.config import ConfigError, GeneratorConfig, from_dict, to_dict
from attngan.inference.fast import FastGenerator
from attngan.models.generator import ConditioningAugmentation, Generator


def test_noise_scale_multiplies_the_deviation_from_mu() -> None:
    torch.manual_seed(0)
    ca = ConditioningAugmentation(8, 4, noise_scale=0.25)
    sentence, eps = torch.randn(5, 8), torch.randn(5, 4)
    c, mu, logvar = ca(sentence, eps)
    torch.testing.assert_close(c - mu, 0.25 * eps * torch.exp(0.5 * logvar))
    ca.noise_scale = 0.0
    c0, mu0, _ = ca(sentence, eps)
    torch.testing.assert_close(c0, mu0)  # no augmentation: the condition is the caption's mean


def test_default_is_the_original_unit_noise() -> None:
    torch.manual_seed(0)
    ca = ConditioningAugmentation(8, 4)
    sentence, eps = torch.randn(3, 8), torch.randn(3, 4)
    c, mu, logvar = ca(sentence, eps)
    torch.testing.assert_close(c, mu + eps * torch.exp(0.5 * logvar))
    assert GeneratorConfig().condition_noise == 1.0


def test_config_round_trip_and_old_configs() -> None:
    cfg = GeneratorConfig(condition_noise=0.1)
    assert from_dict(GeneratorConfig, to_dict(cfg)) == cfg
    old = to_dict(GeneratorConfig())
    del old["condition_noise"]  # a config.json written before the field existed
    assert from_dict(GeneratorConfig, old).condition_noise == 1.0
    with pytest.raises(ConfigError, match="condition_noise"):
        GeneratorConfig(condition_noise=-1.0)


def test_generator_and_fast_path_use_the_scale() -> None:
    torch.manual_seed(0)
    cfg = GeneratorConfig(text_dim=16, condition_dim=8, noise_dim=8, channels=8, num_residual=1,
                          num_stages=2, first_stage_size=16)
    quiet = Generator(dataclasses.replace(cfg, condition_noise=0.0)).eval()
    loud = Generator(cfg).eval()
    loud.load_state_dict(quiet.state_dict())
    z, sentence, words = torch.randn(2, 8), torch.randn(2, 16), torch.randn(2, 16, 5)
    eps = torch.randn(2, 8)
    with torch.no_grad():
        a, b = quiet(z, sentence, words, eps=eps), loud(z, sentence, words, eps=eps)
        torch.testing.assert_close(a.condition, a.mu)
        assert not torch.allclose(b.condition, b.mu)
        fast = FastGenerator(quiet)(z, sentence, words, eps=eps)
    torch.testing.assert_close(fast.images[-1], a.images[-1], atol=1e-4, rtol=0)
