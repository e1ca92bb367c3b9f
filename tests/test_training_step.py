"""The training step: each rewrite of ``attngan.training.fast_layers`` is exact, and one step of
``GANTrainer`` (every speed option on, fp32) computes what the original computes, held against
an independent step written here with the reference modules and the original's order of updates."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from attngan.config import DiscriminatorConfig, ImageEncoderConfig, TextEncoderConfig
from attngan.data import build_from_options, collate
from attngan.hub import DAMSMEncoders, load_pretrained, save_damsm
from attngan.losses.damsm import sentence_loss, words_loss
from attngan.losses.gan import discriminator_loss, generator_adversarial_loss, kl_loss
from attngan.models.discriminator import Discriminator
from attngan.models.image_encoder import build_image_encoder
from attngan.models.layers import up_block
from attngan.models.text_encoder import TextEncoder
from attngan.training.distributed import DistInfo
from attngan.training.fast_layers import (
    SubpixelUpConv,
    checkpoint_last_stage,
    fold_frozen_batchnorms,
    release_gradients_after_step,
    update_in_backward,
    use_matmul_logits,
    use_subpixel_up_blocks,
)
from attngan.training.gan import GANTrainer
from attngan.training.options import SpeedOptions, resolve_config

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


@pytest.mark.parametrize("spectral", [False, True])
def test_matmul_logits_are_the_convolution(spectral: bool) -> None:
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(image_size=16, channels=4, text_dim=6, spectral_norm=spectral))
    reference = Discriminator(d.config)
    reference.load_state_dict(d.state_dict())
    assert use_matmul_logits(d) == 2 and d.state_dict().keys() == reference.state_dict().keys()
    features, sentence = torch.randn(3, 32, 4, 4, requires_grad=True), torch.randn(3, 6)
    a, b = d.logits(features, sentence), reference.logits(features, sentence)
    for p, q in zip(a, b, strict=True):
        assert p.shape == q.shape == (3,) and (p - q).abs().max() <= 1e-5 * max(1.0, float(q.detach().abs().max()))
    heads = [d.conditional_head, d.unconditional_head], [reference.conditional_head, reference.unconditional_head]
    ga = torch.autograd.grad(sum(t.sum() for t in a), [features, *(p for h in heads[0] for p in h.parameters())])
    gb = torch.autograd.grad(sum(t.sum() for t in b), [features, *(p for h in heads[1] for p in h.parameters())])
    for p, q in zip(ga, gb, strict=True):
        assert (p - q).abs().max() <= 1e-5 * max(1.0, float(q.abs().max()))
    conv = d.conditional_head.logits[0]
    x = torch.randn(2, 32, 6, 6)  # a larger map: the convolution itself
    with torch.no_grad():
        assert torch.equal(conv(x), nn.functional.conv2d(x, conv.weight, conv.bias, stride=4))


@pytest.mark.parametrize("fused", [False, True])
def test_updates_in_the_backward_pass_are_the_optimisers_steps(fused: bool) -> None:
    """Adam applied to each weight as its gradient completes equals Adam's step after the backward
    pass, bit for bit, also after the optimiser's state was loaded (which replaces its groups);
    every gradient is released as soon as it is applied."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(0.2), nn.Conv2d(4, 2, 3))
    twin = copy.deepcopy(net)
    opt, twin_opt = (torch.optim.Adam(m.parameters(), lr=0.01, betas=(0.5, 0.999), fused=fused) for m in (net, twin))
    update_in_backward(opt)
    release_gradients_after_step(opt)
    held: list[int] = []
    for step in range(3):
        if step == 2:
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        x = torch.randn(2, 3, 8, 8)
        net(x).square().mean().backward()  # updates net as it goes
        held.append(sum(p.grad is not None for p in net.parameters()))
        twin_opt.zero_grad()
        twin(x).square().mean().backward()
        twin_opt.step()
        for a, b in zip(net.parameters(), twin.parameters(), strict=True):
            assert torch.equal(a, b), step
    assert held == [0, 0, 0]


def test_a_recomputed_last_stage_counts_the_batch_once() -> None:
    """The last stage's forward runs twice (once more in the backward pass): same gradients, and its
    BatchNorm statistics advance once, as without recomputation."""
    from attngan.config import GeneratorConfig
    from attngan.models.generator import Generator

    torch.manual_seed(0)
    config = GeneratorConfig(text_dim=8, condition_dim=4, noise_dim=4, channels=4, num_residual=1, num_stages=3,
                             first_stage_size=8)
    recomputed, plain = Generator(config).train(), Generator(config).train()
    plain.load_state_dict(recomputed.state_dict())
    assert checkpoint_last_stage(recomputed) and recomputed.state_dict().keys() == plain.state_dict().keys()
    z, s, w, eps = torch.randn(3, 4), torch.randn(3, 8), torch.randn(3, 8, 5), torch.randn(3, 4)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 3:] = True
    grads = []
    for g in (recomputed, plain):
        out = g(z, s, w, mask, eps=eps)
        loss = sum((img * torch.linspace(-1, 1, img.numel()).view_as(img)).sum() for img in out.images)
        grads.append(torch.autograd.grad(loss, list(g.parameters())))
    for p, q in zip(*grads, strict=True):
        assert (p - q).abs().max() <= 1e-5 * max(1.0, float(q.abs().max()))
    for (name, a), b in zip(recomputed.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # running statistics and batch counts: once


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
    data = build_from_options(resolve_config("damsm", "shapes").data, (32,), 18)
    torch.manual_seed(0)
    text = TextEncoder(TextEncoderConfig(vocab_size=len(data.vocab), word_embedding_dim=16, hidden_dim=16,
                                         dropout=0.0)).eval()
    image = build_image_encoder(ImageEncoderConfig(kind="light", embedding_dim=16, image_size=32,
                                                   light_channels=8)).eval()
    randomise_batchnorm(image)
    return save_damsm(DAMSMEncoders(text, image, data.vocab), folder / "damsm")


OVERRIDES = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "generator.num_stages=3",
             "generator.first_stage_size=16", "discriminator.channels=8", "data.extra={size: 16}", "run.batch_size=4",
             "run.sample_every=0", "run.threads=1", "run.precision=fp32", "loss.weight=2.0",
             "data.counterfactuals=0",  # the original has no counterfactual captions
             # nor the shapes preset's additions to the original's step
             "damsm_shift=0", "discriminator.batchnorm=true", "encoder_discriminator=0.0", "diversity_weight=0.0"]


def original_step(trainer: GANTrainer, generator: nn.Module, discriminators: nn.ModuleList,
                  batch: dict, z: torch.Tensor, eps: torch.Tensor) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """One iteration as the original ``trainer.py`` orders it, on the reference modules: each
    discriminator's own loss, backward and Adam step; then the generator's adversarial, DAMSM and
    KL terms, backward and Adam step. Returns the losses and every gradient (by parameter name)."""
    cfg = trainer.cfg
    tokens, lengths, classes = batch["tokens"], batch["lengths"], batch["class_ids"]
    with torch.no_grad():
        words, sentence = trainer.text_encoder(tokens, lengths)
    out = generator(z, sentence, words, tokens == 0, eps=eps)
    opts_d = [torch.optim.Adam(d.parameters(), lr=cfg.optim_d.lr, betas=(cfg.optim_d.beta1, cfg.optim_d.beta2))
              for d in discriminators]
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.optim_g.lr, betas=(cfg.optim_g.beta1, cfg.optim_g.beta2))
    logs, grads = {}, {}
    record = _recorder(grads, {"g": generator, **{f"d{i}": d for i, d in enumerate(discriminators)}})
    for opt in (*opts_d, opt_g):
        opt.register_step_pre_hook(record)
    b = tokens.shape[0]
    wrong = torch.arange(b - 1)
    for i, (d, opt) in enumerate(zip(discriminators, opts_d, strict=True)):
        real, fake = batch["images"][i], out.images[i].detach()
        real_f, fake_f = d(real), d(fake)
        cond_real, uncond_real = d.logits(real_f, sentence)
        cond_fake, uncond_fake = d.logits(fake_f, sentence)
        cond_wrong = d.conditional_head(real_f[wrong], sentence[wrong + 1])
        loss = discriminator_loss(cond_real, cond_fake, cond_wrong, uncond_real, uncond_fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
        logs[f"loss_d{i}"] = float(loss.detach())
    adversarial = sum(generator_adversarial_loss(*d.logits(d(img), sentence))
                      for d, img in zip(discriminators, out.images, strict=True))
    regions, codes = trainer.reference_image_encoder(out.images[-1])
    g = cfg.loss
    w0, w1, _ = words_loss(regions, words, lengths, classes, g.gamma1, g.gamma2, g.gamma3)
    s0, s1 = sentence_loss(codes, sentence, classes, g.gamma3)
    loss_g = adversarial + (w0 + w1 + s0 + s1) * g.weight + kl_loss(out.mu, out.logvar) * cfg.kl_weight
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    logs["loss_g"] = float(loss_g.detach())
    return logs, grads


def _recorder(grads: dict[str, torch.Tensor], modules: dict[str, nn.Module]):  # noqa: ANN202
    """An optimiser step pre-hook that copies the gradients it is about to apply, by parameter name."""
    names = {id(p): f"{prefix}.{n}" for prefix, m in modules.items() for n, p in m.named_parameters()}

    def hook(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    grads[names[id(p)]] = p.grad.detach().clone()

    return hook


@pytest.mark.parametrize("speed", ["reference", "default", "all"])  # compiled: tests/test_compiled_step.py
def test_one_step_computes_what_the_original_computes(speed: str, tmp_path: Path) -> None:
    """Same losses and the same gradients as the original's step; with every speed option off, the
    same weights after the Adam updates too (Adam's first step, about lr times the sign of each
    gradient, may differ for gradients within rounding of its eps). (With the options on, Adam's first step, about lr times the
    sign of each gradient, may flip for gradients within rounding of zero, and the generator's
    gradients go through the updated discriminators: so there the discriminators' learning rate is 0,
    and their gradients are compared before the update.)"""
    damsm = _damsm_folder(tmp_path)
    frozen_d = ["optim_d.lr=0.0"] if speed != "reference" else []
    cfg = resolve_config("gan", "shapes", OVERRIDES + frozen_d + [f"damsm={damsm}", f"run.out_dir={tmp_path / 'run'}"])
    assert cfg.run.speed == SpeedOptions()  # every speed option at its default
    options = {"reference": SpeedOptions.reference(), "default": SpeedOptions(),
               "all": SpeedOptions(**{f.name: f.name != "compile" for f in dataclasses.fields(SpeedOptions)})}[speed]
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, speed=options))
    trainer = GANTrainer(cfg, DistInfo())
    generator = copy.deepcopy(trainer.ema.shadow).train().requires_grad_(True)  # reference layers, same weights
    discriminators = nn.ModuleList([Discriminator(d.config) for d in trainer.discriminators])  # reference layers
    discriminators.load_state_dict(trainer.discriminators.state_dict())
    batch = collate([trainer.data[i] for i in range(4)])
    state = trainer.noise.get_state()
    z, eps = torch.randn(4, 8, generator=trainer.noise), torch.randn(4, 8, generator=trainer.noise)
    trainer.noise.set_state(state)
    grads: dict[str, torch.Tensor] = {}
    record = _recorder(grads, {"g": trainer.generator, **{f"d{i}": d for i, d in enumerate(trainer.discriminators)}})
    for opt in trainer.optimizers():
        opt.register_step_pre_hook(record)
    logs = trainer.train_step(batch)
    expected, expected_grads = original_step(trainer, generator, discriminators, batch, z, eps)
    for key, value in expected.items():
        assert abs(logs[key] - value) <= 1e-5 * max(1.0, abs(value)), key
    assert grads.keys() == expected_grads.keys() and len(grads) > 20
    for name, g in expected_grads.items():
        assert (grads[name] - g).abs().max() <= 1e-4 * float(g.abs().max()) + 1e-7, name
    if speed == "reference":  # the same Adam updates, but where a gradient is within rounding of Adam's eps
        lr = cfg.optim_g.lr
        for prefix, ours, theirs in [("g", generator, trainer.generator),
                                     *((f"d{i}", a, b) for i, (a, b) in enumerate(zip(
                                         discriminators, trainer.discriminators, strict=True)))]:
            for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
                diff = (p - q).abs()
                clear = expected_grads[f"{prefix}.{name}"].abs() > 1e-6
                assert diff.max() <= 2 * lr and (diff[clear].max() if clear.any() else 0) <= 1e-6, name
    else:
        assert all(p.grad is None for d in trainer.discriminators for p in d.parameters())  # released
    exported = trainer.export(tmp_path / "model")  # the reference layers, whatever ran
    assert load_pretrained(exported).generator.state_dict().keys() == generator.state_dict().keys()
