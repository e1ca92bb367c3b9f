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


def test_condition_modulation_starts_as_the_original_stage_and_learns() -> None:
    """``generator.condition_modulation``: a fresh (original-initialised) modulated generator is
    the plain one's function; its scale and shift get gradients; the training rewrite of the
    up-blocks (sub-pixel convolutions) leaves it the same function; old configs read as off."""
    from attngan.models.layers import init_weights_original
    from attngan.training.fast_layers import use_subpixel_up_blocks

    cfg = GeneratorConfig(text_dim=16, condition_dim=8, noise_dim=8, channels=8, num_residual=1,
                          num_stages=2, first_stage_size=16)
    old = to_dict(cfg)
    del old["condition_modulation"]
    assert from_dict(GeneratorConfig, old).condition_modulation is False
    torch.manual_seed(0)
    plain = Generator(cfg)
    plain.apply(init_weights_original)
    modulated = Generator(dataclasses.replace(cfg, condition_modulation=True))
    modulated.apply(init_weights_original)
    missing, unexpected = modulated.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("initial.modulation.") for k in missing)
    z, sentence, words = torch.randn(4, 8), torch.randn(4, 16), torch.randn(4, 16, 5)
    eps = torch.randn(4, 8)
    plain.eval(), modulated.eval()
    with torch.no_grad():
        torch.testing.assert_close(modulated(z, sentence, words, eps=eps).images[-1],
                                   plain(z, sentence, words, eps=eps).images[-1])
    modulated.train()
    modulated(z, sentence, words, eps=eps).images[-1].square().mean().backward()
    assert modulated.initial.modulation is not None
    assert all(m.fc.weight.grad is not None and m.fc.weight.grad.abs().sum() > 0 for m in modulated.initial.modulation)
    with torch.no_grad():
        for m in modulated.initial.modulation:
            m.fc.weight.normal_(std=0.3)
    modulated.eval()
    with torch.no_grad():
        before = modulated(z, sentence, words, eps=eps).images[-1]
        assert not torch.allclose(before, plain(z, sentence, words, eps=eps).images[-1], atol=1e-3)
        assert use_subpixel_up_blocks(modulated) == 3  # two in the first stage, one in the refinement stage
        torch.testing.assert_close(modulated(z, sentence, words, eps=eps).images[-1], before, atol=1e-5, rtol=0)
