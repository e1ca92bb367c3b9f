"""The encoder discriminator (``encoder_discriminator``): a trainable head over the frozen DAMSM image
encoder's region features, trained beside the per-stage discriminators; the generator's term through
it is weighted, reaches the generator the same way with and without ``encoder_first``, and its head
and optimiser travel in the checkpoint."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from attngan.config import ConfigError
from attngan.models.discriminator import FeatureDiscriminator
from attngan.training.distributed import DistInfo
from attngan.training.gan import GANTrainer
from attngan.training.options import resolve_config

from .conftest import random_damsm

pytestmark = pytest.mark.usefixtures("one_thread")

SETS = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "discriminator.channels=8",
        "data.extra={size: 8}", "run.batch_size=4", "data.counterfactuals=2",
        "run.precision=fp32", "damsm_shift=0", "diversity_weight=0.0"]  # the encoder discriminator alone, exactly


def test_feature_discriminator_shapes() -> None:
    head = FeatureDiscriminator(feature_dim=12, text_dim=6, channels=4)
    features = head(torch.randn(3, 12, 5, 5))
    assert features.shape == (3, 32, 5, 5)
    logits = head.conditional_head(features, torch.randn(3, 6))
    assert logits.shape == (3,)
    # a projection: the sentence enters only through its inner product with the pooled features
    without = head.conditional_head(features, torch.zeros(3, 6))
    sentence = torch.randn(3, 6)
    expected = (head.conditional_head.embed(sentence) * features.sum(dim=(2, 3))).sum(1)
    assert torch.allclose(head.conditional_head(features, sentence) - without, expected, atol=1e-4)


def _generator_gradients(tmp_path: Path, damsm: Path, extra: list[str], encoder_first: bool = True
                         ) -> tuple[dict[str, torch.Tensor], dict[str, float], GANTrainer]:
    cfg = resolve_config("gan", "shapes", SETS + extra + [f"damsm={damsm}", f"run.out_dir={tmp_path}"])
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(
        cfg.run, speed=dataclasses.replace(cfg.run.speed, encoder_first=encoder_first, release_gradients=False)))
    trainer = GANTrainer(cfg, DistInfo())
    if trainer.encoder_d is not None:
        trainer.head_before = copy.deepcopy(trainer.encoder_d.judge.state_dict())  # type: ignore[attr-defined]
    grads: dict[str, torch.Tensor] = {}

    def record(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        for name, p in trainer.generator.named_parameters():
            if p.grad is not None:
                grads[name] = p.grad.detach().clone()

    trainer.opt_g.register_step_pre_hook(record)
    logs = trainer.train_step(next(trainer.stream.iterate(0)))
    return grads, logs, trainer


@pytest.mark.parametrize("trainable", [False, True])
def test_the_generators_term_is_weighted_and_reaches_the_generator(tmp_path: Path, trainable: bool) -> None:
    damsm = random_damsm(tmp_path / "damsm")
    kind = [f"encoder_discriminator_trainable={str(trainable).lower()}"]
    off, logs_off, _ = _generator_gradients(tmp_path / "off", damsm, ["encoder_discriminator=0.0"])
    one, logs_one, trainer = _generator_gradients(tmp_path / "one", damsm, ["encoder_discriminator=1.0", *kind])
    two, _, _ = _generator_gradients(tmp_path / "two", damsm, ["encoder_discriminator=2.0", *kind])
    late, _, _ = _generator_gradients(tmp_path / "late", damsm, ["encoder_discriminator=1.0", *kind],
                                      encoder_first=False)
    assert "loss_d_enc" not in logs_off and logs_one["loss_d_enc"] > 0 and logs_one["loss_g_enc"] > 0
    assert logs_one["loss_g"] == pytest.approx(logs_off["loss_g"] + logs_one["loss_g_enc"], rel=1e-4)
    assert off.keys() == one.keys() == two.keys() == late.keys() and len(off) > 10
    moved = 0
    for name, g in off.items():
        term = one[name] - g  # the head is trained identically before the generator's pass in both
        scale = float(g.abs().max()) + float(term.abs().max()) + 1e-8
        assert (two[name] - g - 2 * term).abs().max() <= 1e-4 * scale, name
        assert (late[name] - one[name]).abs().max() <= 1e-4 * scale, name
        moved += int(term.abs().max() > 1e-6 * scale)
    assert moved > len(off) // 2  # the term reaches most of the generator
    # the head's weights were updated; the frozen encoder's were not
    assert trainer.encoder_d is not None
    after = trainer.encoder_d.judge.state_dict()
    before = trainer.head_before  # type: ignore[attr-defined]
    assert before.keys() == after.keys() and any(k.startswith("backbone.") for k in after) == trainable
    changed = {k for k, v in before.items() if not torch.equal(v, after[k])}
    assert {k for k in before if k.startswith("head.")} <= changed
    if trainable:  # the region path of the backbone learns (its global branch is unused here)
        assert {"backbone.project_regions.weight", "backbone.stem.0.weight"} <= changed
    assert not any(p.requires_grad for p in trainer.reference_image_encoder.parameters())


def test_the_head_and_its_optimiser_travel_in_the_checkpoint(tmp_path: Path) -> None:
    damsm = random_damsm(tmp_path / "damsm")
    _, _, trainer = _generator_gradients(tmp_path / "a", damsm, ["encoder_discriminator=0.5"])
    state = trainer.state_dict()
    assert "encoder_discriminator" in state["models"] and len(trainer.optimizers()) == 2 + len(trainer.discriminators)
    cfg = resolve_config("gan", "shapes", SETS + ["encoder_discriminator=0.5", f"damsm={damsm}",
                                                  f"run.out_dir={tmp_path / 'b'}"])
    other = GANTrainer(cfg, DistInfo())
    assert other.encoder_d is not None and trainer.encoder_d is not None
    other.load_state_dict(state)
    for (name, p), q in zip(trainer.encoder_d.head.state_dict().items(), other.encoder_d.head.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name
    assert other.encoder_d.opt.state_dict()["state"].keys() == trainer.encoder_d.opt.state_dict()["state"].keys()
    with pytest.raises(ConfigError, match="encoder_discriminator"):
        resolve_config("gan", "shapes", ["encoder_discriminator=-1"])


def test_the_trainable_backbone_starts_as_the_frozen_encoder(tmp_path: Path) -> None:
    damsm = random_damsm(tmp_path / "damsm")
    cfg = resolve_config("gan", "shapes", SETS + ["encoder_discriminator=1", "encoder_discriminator_trainable=true",
                                                  f"damsm={damsm}", f"run.out_dir={tmp_path / 'run'}"])
    trainer = GANTrainer(cfg, DistInfo())
    assert trainer.encoder_d is not None and trainer.encoder_d.judge.backbone is not None
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = trainer.reference_image_encoder(images)[0]
        got = trainer.encoder_d.judge.backbone(images)[0]
    assert torch.allclose(got, expected, atol=1e-4 * float(expected.abs().max()))
    assert all(p.requires_grad for p in trainer.encoder_d.judge.parameters())
    assert {id(p) for p in trainer.encoder_d.judge.parameters()} == {
        id(p) for group in trainer.encoder_d.opt.param_groups for p in group["params"]}
    state = trainer.state_dict()["models"]["encoder_discriminator"]
    assert "backbone" in state
    frozen = GANTrainer(resolve_config("gan", "shapes", SETS + ["encoder_discriminator=1", f"damsm={damsm}",
                                                                f"run.out_dir={tmp_path / 'other'}"]), DistInfo())
    with pytest.raises(ValueError, match="no trainable backbone"):
        trainer.encoder_d.load_state_dict(frozen.state_dict()["models"]["encoder_discriminator"])
