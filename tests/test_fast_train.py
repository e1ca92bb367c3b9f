"""The faster training step (``attngan.training.fast_train``): each rewrite is exact, and a
``FastGANTrainer`` follows the same losses and updates as ``GANTrainer``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from attngan.config import ImageEncoderConfig, TextEncoderConfig
from attngan.data import collate
from attngan.hub import DAMSMEncoders, save_damsm
from attngan.models.image_encoder import build_image_encoder
from attngan.models.layers import up_block
from attngan.models.text_encoder import TextEncoder
from attngan.training.damsm import build_data
from attngan.training.distributed import DistInfo
from attngan.training.fast_train import (
    FastGANTrainer,
    SubpixelUpConv,
    fold_frozen_batchnorms,
    use_subpixel_up_blocks,
)
from attngan.training.gan import GANTrainer
from attngan.training.options import resolve_config

from .test_fast import randomise_batchnorm


def test_subpixel_up_conv_matches_forward_and_gradients() -> None:
    torch.manual_seed(0)
    block = up_block(6, 4)
    reference = up_block(6, 4)
    reference.load_state_dict(block.state_dict())
    assert use_subpixel_up_blocks(block) == 1 and isinstance(block[1], SubpixelUpConv)
    assert block.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(3, 6, 5, 7)
    a, b = block(x), reference(x)
    assert a.shape == b.shape == (3, 4, 10, 14) and (a - b).abs().max() <= 1e-5
    grad = torch.randn_like(a)
    ga = torch.autograd.grad(a, [block[1].weight, block[2].weight], grad)
    gb = torch.autograd.grad(b, [reference[1].weight, reference[2].weight], grad)
    for p, q in zip(ga, gb, strict=True):
        assert (p - q).abs().max() <= 1e-4 * max(1.0, float(q.abs().max()))


def _same_function(folded: nn.Module, module: nn.Module, x: torch.Tensor) -> None:
    x = x.clone().requires_grad_(True)
    a, b = folded(x), module(x)
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    for p, q in zip(a, b, strict=True):
        assert (p - q).abs().max() <= 1e-4 * max(1.0, float(q.detach().abs().max()))
    ga, = torch.autograd.grad(sum(t.sum() for t in a), x)
    gb, = torch.autograd.grad(sum(t.sum() for t in b), x)
    assert (ga - gb).abs().max() <= 1e-4 * max(float(gb.abs().max()), 1.0)


def test_folded_frozen_encoder_is_the_same_function() -> None:
    from torchvision.models.inception import InceptionA

    torch.manual_seed(0)
    light = build_image_encoder(ImageEncoderConfig(kind="light", embedding_dim=16, image_size=64, light_channels=8))
    block = InceptionA(16, pool_features=8)  # torchvision's BasicConv2d (conv -> BN -> ReLU) units
    for module, x in ((light, torch.rand(2, 3, 64, 64) * 2 - 1), (block, torch.randn(2, 16, 9, 9))):
        randomise_batchnorm(module)
        module.eval().requires_grad_(False)
        folded = fold_frozen_batchnorms(module)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        _same_function(folded, module, x)
    inception = build_image_encoder(ImageEncoderConfig(kind="inception")).eval().requires_grad_(False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fold_frozen_batchnorms(inception).modules())


def _damsm_folder(folder: Path) -> Path:
    data = build_data(resolve_config("damsm", "shapes").data, (32,), 18)
    torch.manual_seed(0)
    text = TextEncoder(TextEncoderConfig(vocab_size=len(data.vocab), word_embedding_dim=16, hidden_dim=16,
                                         dropout=0.0)).eval()
    image = build_image_encoder(ImageEncoderConfig(kind="light", embedding_dim=16, image_size=32,
                                                   light_channels=8)).eval()
    randomise_batchnorm(image)
    return save_damsm(DAMSMEncoders(text, image, data.vocab), folder / "damsm")


def test_fast_trainer_follows_the_reference(tmp_path: Path) -> None:
    damsm = _damsm_folder(tmp_path)
    overrides = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8",
                 "generator.num_stages=2", "generator.first_stage_size=16", "discriminator.channels=8",
                 "data.extra={size: 16}", "run.batch_size=4", "run.sample_every=0", "run.threads=1",
                 f"damsm={damsm}"]
    cfg = resolve_config("gan", "shapes", overrides + [f"run.out_dir={tmp_path / 'ref'}"])
    reference = GANTrainer(cfg, DistInfo())
    fast = FastGANTrainer(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp_path / "fast"))),
                          DistInfo())
    batch = collate([reference.data[i] for i in range(4)])
    for _ in range(2):
        logs_ref, logs_fast = reference.train_step(batch), fast.train_step(batch)
        for key, value in logs_ref.items():
            assert abs(logs_fast[key] - value) <= 1e-3 * max(1.0, abs(value)), key
    for (name, p), q in zip(reference.generator.named_parameters(), fast.generator.parameters(), strict=True):
        assert (p - q).abs().max() <= 1e-4, name
    assert all(p.grad is None for d in fast.discriminators for p in d.parameters())  # released after the step
    exported = fast.export(tmp_path / "model")
    assert (exported / "model.safetensors").exists()
    assert fast.image_encoder is not fast._reference_image_encoder  # the fast encoder is back after export
