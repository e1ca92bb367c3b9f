"""The training options beyond the original: hinge loss, DF-GAN's matching-aware gradient penalty and
a projection discriminator, each against a computation written out here."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import cast

import pytest
import torch

from attngan.config import ConfigError, DiscriminatorConfig
from attngan.losses.gan import (
    discriminator_loss,
    generator_adversarial_loss,
    generator_loss,
    matching_aware_penalty,
)
from attngan.models.discriminator import Discriminator, ProjectionHead

pytestmark = pytest.mark.usefixtures("one_thread")


def test_hinge_terms() -> None:
    real, fake, wrong = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.25]), torch.tensor([0.0])
    # relu(1 - real) = [0, 0.5]; relu(1 + fake) = [0, 1.25]; relu(1 + wrong) = [1]
    expected = 0.25 + (0.625 + 1.0) / 2
    assert discriminator_loss(real, fake, wrong, kind="hinge").item() == pytest.approx(expected)
    expected_u = (0.25 + 0.25) / 2 + (0.625 + 0.625 + 1.0) / 3
    assert discriminator_loss(real, fake, wrong, real, fake, kind="hinge").item() == pytest.approx(expected_u)
    assert generator_adversarial_loss(fake, kind="hinge").item() == pytest.approx(1.375)
    assert generator_adversarial_loss(fake, fake, kind="hinge").item() == pytest.approx(2.75)
    with pytest.raises(ValueError, match="adversarial loss"):
        discriminator_loss(real, fake, wrong, kind="wasserstein")


def test_generator_loss_composition() -> None:
    cond = torch.tensor([0.3, -0.2])
    damsm = {"w0": torch.tensor(1.0), "w1": torch.tensor(2.0), "s0": torch.tensor(3.0), "s1": torch.tensor(4.0)}
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    out = generator_loss([(cond, None), (cond, cond)], damsm, mu, logvar, damsm_weight=0.5, kl_weight=2.0,
                         kind="hinge")
    assert out["adversarial"].item() == pytest.approx(-0.05 * 3)
    assert out["damsm_words"].item() == pytest.approx(1.5) and out["damsm_sentence"].item() == pytest.approx(3.5)
    assert out["kl"].item() == 0.0 and out["total"].item() == pytest.approx(-0.15 + 5.0)


def test_matching_aware_penalty_of_a_linear_critic() -> None:
    """For ``D(x, s) = <w, x> + <v, s>`` the gradient is ``(w, v)`` for every sample."""
    torch.manual_seed(0)
    w, v = torch.randn(3, 4, 4, requires_grad=True), torch.randn(5, requires_grad=True)
    x = torch.randn(6, 3, 4, 4, requires_grad=True)
    s = torch.randn(6, 5, requires_grad=True)
    logits = (x * w).sum(dim=(1, 2, 3)) + s @ v
    norm = math.sqrt(float((w.detach() ** 2).sum() + (v.detach() ** 2).sum()))
    penalty = matching_aware_penalty(logits, [x, s], weight=2.0, power=6.0)
    assert penalty.item() == pytest.approx(2.0 * norm ** 6, rel=1e-5)
    assert penalty.requires_grad  # the discriminator is updated through it


def test_projection_head() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(channels=2, text_dim=3, spectral=False)
    features, sentence = torch.randn(4, 16, 4, 4), torch.randn(4, 3)
    h = features.sum(dim=(2, 3))
    expected = h @ head.linear.weight[0] + head.linear.bias + ((sentence @ head.embed.weight.t()) * h).sum(1)
    assert torch.allclose(head(features, sentence), expected, atol=1e-5)
    d = Discriminator(DiscriminatorConfig(image_size=32, channels=4, text_dim=3, conditioning="projection",
                                          spectral_norm=True))
    cond, uncond = d.logits(d(torch.randn(2, 3, 32, 32)), torch.randn(2, 3))
    assert cond.shape == uncond.shape == (2,)
    with pytest.raises(ConfigError, match="conditioning"):
        DiscriminatorConfig(conditioning="dot")


@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_discriminator_without_batchnorm_judges_each_image_alone(conditioning: str) -> None:
    torch.manual_seed(0)
    cfg = DiscriminatorConfig(image_size=64, channels=4, text_dim=8, conditioning=conditioning)
    with_bn, without = Discriminator(cfg), Discriminator(dataclasses.replace(cfg, batchnorm=False))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in without.modules())
    # the BatchNorm entries go; every other entry keeps its name and shape (the layer indices stay)
    bn_names = {name for name, m in with_bn.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    expected = {k: v.shape for k, v in with_bn.state_dict().items() if k.rsplit(".", 1)[0] not in bn_names}
    assert bn_names and {k: v.shape for k, v in without.state_dict().items()} == expected
    images, sentence = torch.randn(4, 3, 64, 64), torch.randn(4, 8)
    others = torch.cat((images[:1], torch.rand(3, 3, 64, 64)))  # the first image among other company

    def first_logit(d: Discriminator, batch: torch.Tensor) -> torch.Tensor:
        return d.logits(d(batch), sentence)[0][0]

    # training mode: with BatchNorm an image's logit depends on the batch it came in, without it not
    assert not torch.allclose(first_logit(with_bn.train(), images), first_logit(with_bn, others))
    torch.testing.assert_close(first_logit(without.train(), images), first_logit(without, others))


def test_a_run_with_hinge_projection_and_penalty(tmp_path: Path) -> None:
    from attngan.training.damsm import train_damsm
    from attngan.training.gan import train_gan
    from attngan.training.options import resolve_config

    damsm = train_damsm(resolve_config("damsm", "shapes", [
        "text_encoder.word_embedding_dim=16", "text_encoder.hidden_dim=16", "image_encoder.image_size=32",
        "image_encoder.light_channels=8", "image_encoder.embedding_dim=16", "data.extra={size: 32}",
        "run.batch_size=8", "run.max_steps=2", f"run.out_dir={tmp_path / 'damsm'}"]))
    cfg = resolve_config("gan", "shapes", [
        "generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "generator.num_stages=2",
        "generator.first_stage_size=16", "discriminator.channels=8", "discriminator.conditioning=projection",
        "discriminator.spectral_norm=true", "discriminator.batchnorm=false", "adversarial_loss=hinge", "gradient_penalty=2.0",
        "data.extra={size: 32}", "run.batch_size=8", "run.max_steps=3", "run.log_every=1", "run.sample_every=0",
        f"run.out_dir={tmp_path / 'gan'}", f"damsm={damsm}"])
    train_gan(cfg)
    logs = [json.loads(line) for line in (tmp_path / "gan" / "metrics.jsonl").read_text().splitlines()]
    assert len(logs) == 3 and all(math.isfinite(v) for r in logs for k, v in r.items() if k.startswith("loss"))
    with pytest.raises(ConfigError, match="adversarial_loss"):
        resolve_config("gan", "shapes", ["adversarial_loss=wgan"])


def test_batchnorm_recalibration_of_the_exported_generator(tmp_path: Path) -> None:
    """``ema_batchnorm_batches``: the exported generator's BatchNorm statistics are those of its own
    (averaged) weights on fixed training batches -- the same twice, the EMA module and the training's
    random state untouched; off, the EMA module itself is exported."""
    from attngan.training.distributed import DistInfo
    from attngan.training.ema import recalibrate_batchnorm
    from attngan.training.gan import GANTrainer
    from attngan.training.options import resolve_config

    from .conftest import random_damsm

    sets = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "discriminator.channels=8",
            "data.extra={size: 24}", "run.batch_size=4", "run.sample_every=0", "run.precision=fp32",
            f"damsm={random_damsm(tmp_path / 'damsm')}", f"run.out_dir={tmp_path / 'run'}"]
    plain = GANTrainer(resolve_config("gan", "shapes", sets + ["ema_batchnorm_batches=0"]), DistInfo())
    assert plain.exported_generator() is plain.ema.shadow
    trainer = GANTrainer(resolve_config("gan", "shapes", sets + ["ema_batchnorm_batches=3"]), DistInfo())
    shadow = {k: v.clone() for k, v in trainer.ema.shadow.state_dict().items()}
    state = torch.get_rng_state()
    first = trainer.exported_generator()
    assert torch.equal(torch.get_rng_state(), state) and not first.training
    assert all(torch.equal(v, trainer.ema.shadow.state_dict()[k]) for k, v in shadow.items())
    again = GANTrainer(resolve_config("gan", "shapes", sets + ["ema_batchnorm_batches=3"]), DistInfo())
    second = again.exported_generator()
    stats = [k for k in shadow if k.endswith("running_mean")]
    assert stats and all(torch.equal(first.state_dict()[k], second.state_dict()[k]) for k in stats)
    assert any(not torch.equal(first.state_dict()[k], shadow[k]) for k in stats)
    assert int(first.state_dict()[stats[0].replace("running_mean", "num_batches_tracked")]) == 3
    third = GANTrainer(resolve_config("gan", "shapes", sets + ["ema_batchnorm_batches=3"]), DistInfo())
    third.data.set_epoch(5)  # a later epoch draws other captions; the export is that of the weights alone
    later = third.exported_generator()
    assert all(torch.equal(first.state_dict()[k], later.state_dict()[k]) for k in stats)
    assert third.data.epoch == 5

    # the statistics are the plain averages of the batches' own (training-mode) statistics
    norm = torch.nn.BatchNorm1d(2)
    batches = [torch.randn(5, 2) * (k + 1) + k for k in range(3)]
    recalibrate_batchnorm(norm, norm, batches)
    assert torch.allclose(norm.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0), atol=1e-6)
    assert norm.momentum == 0.1 and not norm.training


def test_damsm_warmup_ramps_the_generators_damsm_weight(tmp_path: Path) -> None:
    from attngan.training.distributed import DistInfo
    from attngan.training.gan import GANTrainer
    from attngan.training.options import resolve_config

    from .conftest import random_damsm

    sets = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "discriminator.channels=8",
            "data.extra={size: 8}", "run.batch_size=4", "loss.weight=2.0", "damsm_warmup=4",
            f"damsm={random_damsm(tmp_path / 'damsm')}", f"run.out_dir={tmp_path / 'run'}"]
    trainer = GANTrainer(resolve_config("gan", "shapes", sets), DistInfo())
    weights = []
    for step in (0, 1, 4, 9):
        trainer.step = step
        weights.append(trainer.damsm_weight())
    assert weights == [0.0, 0.5, 2.0, 2.0] and trainer.step_logs()["damsm_weight"] == 2.0


def test_shift_images_moves_each_image_and_replicates_the_edges() -> None:
    from attngan.training.augment import draw_shifts, shift_images

    images = torch.randn(3, 2, 8, 8, requires_grad=True)
    shifts = torch.tensor([[2, -1], [0, 0], [-3, 3]])
    out = shift_images(images, shifts)
    for b, (dy, dx) in enumerate(shifts.tolist()):
        for y in range(8):
            for x in range(8):  # the source pixel, clamped into the image (edge replication)
                sy, sx = min(max(y - dy, 0), 7), min(max(x - dx, 0), 7)
                assert torch.equal(out[b, :, y, x], images[b, :, sy, sx])
    out.sum().backward()  # every output pixel comes from one input pixel
    assert images.grad is not None and float(images.grad.sum()) == pytest.approx(3 * 2 * 64)
    assert shift_images(images, torch.zeros(3, 2, dtype=torch.long)) is images
    with pytest.raises(ValueError, match="shifts must be"):
        shift_images(images, torch.zeros(2, 2, dtype=torch.long))
    drawn = draw_shifts(500, 2, torch.Generator().manual_seed(0))
    assert drawn.shape == (500, 2) and set(drawn.flatten().tolist()) == {-2, -1, 0, 1, 2}


def test_damsm_shift_moves_the_images_the_damsm_term_scores(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from attngan.training import gan as gan_module
    from attngan.training.distributed import DistInfo
    from attngan.training.gan import GANTrainer
    from attngan.training.options import resolve_config

    from .conftest import random_damsm

    sets = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "discriminator.channels=8",
            "data.extra={size: 8}", "run.batch_size=4", "damsm_shift=3",
            f"damsm={random_damsm(tmp_path / 'damsm')}", f"run.out_dir={tmp_path / 'run'}"]
    trainer = GANTrainer(resolve_config("gan", "shapes", sets), DistInfo())
    seen: dict[str, torch.Tensor] = {}
    real_shift = gan_module.shift_images

    def recording_shift(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        seen["images"], seen["shifts"] = images.detach().clone(), shifts.clone()
        return real_shift(images, shifts)

    encoder = trainer.image_encoder

    def recording_encoder(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen["scored"] = images.detach().clone()
        return encoder(images)

    monkeypatch.setattr(gan_module, "shift_images", recording_shift)
    monkeypatch.setattr(trainer, "image_encoder", recording_encoder)
    logs = trainer.train_step(next(trainer.stream.iterate(0)))
    assert math.isfinite(logs["loss_damsm_w"])
    shifts = seen["shifts"]
    assert shifts.shape == (4, 2) and int(shifts.abs().max()) <= 3 and bool(shifts.ne(0).any())
    assert torch.equal(seen["scored"], real_shift(seen["images"], shifts))
    assert not torch.equal(seen["scored"], seen["images"])
    with pytest.raises(ConfigError, match="damsm_shift"):
        resolve_config("gan", "shapes", ["damsm_shift=-1"])


def test_counterfactual_ranking_loss() -> None:
    from attngan.losses.gan import counterfactual_ranking_loss

    own, counterfactual = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([0.0, 0.0, 3.0])
    expected = (math.log(2.0) + math.log1p(math.exp(-2.0)) + math.log1p(math.exp(4.0))) / 3
    assert float(counterfactual_ranking_loss(own, counterfactual)) == pytest.approx(expected, rel=1e-6)
    assert float(counterfactual_ranking_loss(torch.zeros(0), torch.zeros(0))) == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        counterfactual_ranking_loss(own, counterfactual[:2])


def test_the_generators_ranking_term_through_the_discriminators(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from attngan.training import gan as gan_module
    from attngan.training.distributed import DistInfo
    from attngan.training.gan import GANTrainer
    from attngan.training.options import resolve_config

    from .conftest import random_damsm

    sets = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "discriminator.channels=8",
            "data.extra={size: 8}", "run.batch_size=4", "data.counterfactuals=2", "hard_negatives.generator=0.5",
            f"damsm={random_damsm(tmp_path / 'damsm')}", f"run.out_dir={tmp_path / 'run'}"]
    trainer = GANTrainer(resolve_config("gan", "shapes", sets), DistInfo())
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_loss = gan_module.counterfactual_ranking_loss

    def recording(own: torch.Tensor, counterfactual: torch.Tensor) -> torch.Tensor:
        pairs.append((own.detach().clone(), counterfactual.detach().clone()))
        return real_loss(own, counterfactual)

    monkeypatch.setattr(gan_module, "counterfactual_ranking_loss", recording)
    logs = trainer.train_step(next(trainer.stream.iterate(0)))
    assert len(pairs) == len(trainer.discriminators) and all(len(own) >= 4 for own, _ in pairs)
    expected = 0.5 * sum(float(real_loss(own, cf)) for own, cf in pairs)
    assert logs["loss_g_ranking"] == pytest.approx(expected, rel=1e-5) and logs["loss_g_ranking"] > 0
    with pytest.raises(ConfigError, match="hard_negatives.generator"):
        resolve_config("gan", "shapes", ["hard_negatives.generator=-1"])


def test_the_ranking_term_in_the_discriminator_loss() -> None:
    from attngan.losses.gan import counterfactual_ranking_loss, discriminator_loss

    real, fake, wrong, hard, rows = torch.randn(4), torch.randn(4), torch.randn(3), torch.randn(6), torch.tensor(
        [0, 0, 1, 2, 3, 3])
    for kind in ("bce", "hinge"):
        base = discriminator_loss(real, fake, wrong, kind=kind, cond_hard=hard)
        ranked = discriminator_loss(real, fake, wrong, kind=kind, cond_hard=hard, hard_rows=rows, ranking=2.0)
        assert torch.allclose(ranked, base + 2.0 * counterfactual_ranking_loss(real[rows], hard))
        manual = torch.nn.functional.softplus(hard - real[rows]).mean()
        assert torch.allclose(ranked - base, 2.0 * manual, atol=1e-6)
    with pytest.raises(ValueError, match="hard_rows"):
        discriminator_loss(real, fake, wrong, cond_hard=hard, ranking=1.0)


def test_the_discriminators_ranking_term_on_real_images(tmp_path: Path) -> None:
    from attngan.losses.gan import DiscriminatorLogits, counterfactual_ranking_loss
    from attngan.training.options import resolve_config

    trainer = _tiny_trainer(tmp_path, "data.counterfactuals=2", "hard_negatives.discriminator_ranking=2.0")
    calls: list[tuple[float, float, float]] = []  # (loss, its ranking weight, the ranking term itself)
    real_terms = trainer.losses.discriminators

    def recording_terms(*args: object, **kwargs: object) -> tuple[torch.Tensor, list[torch.Tensor]]:
        total, losses = real_terms(*args, **kwargs)
        logits, rows, weight = cast(list[DiscriminatorLogits], args[0]), cast(torch.Tensor, args[3]), float(
            cast(float, args[4]))
        for lg, loss in zip(logits, losses, strict=True):
            assert lg.cond_hard is not None and len(rows) == len(lg.cond_hard) >= 4
            term = counterfactual_ranking_loss(lg.cond_real.float()[rows], lg.cond_hard.float())
            _, (unranked,) = real_terms([lg], args[1], args[2], rows, 0.0)
            assert float(loss.detach()) == pytest.approx(float(unranked.detach()) + weight * float(term.detach()),
                                                         rel=1e-5)  # the term is in the loss, with its weight
            calls.append((float(loss.detach()), weight, float(term.detach())))
        return total, losses

    trainer.losses = trainer.losses._replace(discriminators=recording_terms)
    logs = trainer.train_step(next(trainer.stream.iterate(0)))
    # one loss per discriminator, over the real images' counterfactual pairs, with the ranking weight
    assert len(calls) == len(trainer.discriminators)
    for i, (loss, weight, term) in enumerate(calls):
        assert weight == 2.0 and term > 0 and logs[f"loss_d{i}"] == pytest.approx(loss, rel=1e-5)
    with pytest.raises(ConfigError, match="discriminator_ranking"):
        resolve_config("gan", "shapes", ["hard_negatives.discriminator_ranking=-1"])
    with pytest.raises(ConfigError, match="needs hard_negatives.discriminator"):
        resolve_config("gan", "shapes", ["hard_negatives.discriminator_ranking=1", "hard_negatives.discriminator=false"])


def test_mode_seeking_loss() -> None:
    from attngan.losses.gan import mode_seeking_loss

    images, twins = torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    twins[0] += 0.5  # apart by 0.5 per element; the second pair identical
    noise, twin_noise = torch.zeros(2, 4), torch.ones(2, 4)  # noise apart by 1
    expected = (1 / (0.5 + 1e-5) + 1 / 1e-5) / 2
    assert float(mode_seeking_loss(images, twins, noise, twin_noise)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="do not pair up"):
        mode_seeking_loss(images, twins[:1], noise, twin_noise)


def test_mode_seeking_loss_shift_invariant() -> None:
    """A twin that differs by one colour everywhere (a recoloured background) is no distance at all
    when shift-invariant; a twin whose object moved (a few pixels against a shared background) is as
    far as in plain pixels, and a recoloured background under a moved object counts only the object."""
    from attngan.losses.gan import mode_seeking_loss

    noise, twin_noise = torch.zeros(1, 4), torch.ones(1, 4)
    images = torch.zeros(1, 3, 4, 4)
    recoloured = images + 0.5
    moved = images.clone()
    moved[:, :, 0, :2] = 1.0  # 2 of 16 pixels
    both = moved + 0.5
    both[:, :, 0, :2] = 1.0
    plain = float(mode_seeking_loss(images, recoloured, noise, twin_noise))
    assert plain == pytest.approx(1 / (0.5 + 1e-5), rel=1e-6)
    assert float(mode_seeking_loss(images, recoloured, noise, twin_noise, shift_invariant=True)) == \
        pytest.approx(1 / 1e-5, rel=1e-6)
    object_only = 1 / (2 / 16 + 1e-5)
    assert float(mode_seeking_loss(images, moved, noise, twin_noise, shift_invariant=True)) == \
        pytest.approx(object_only, rel=1e-6)
    assert float(mode_seeking_loss(images, moved, noise, twin_noise)) == pytest.approx(object_only, rel=1e-6)
    assert float(mode_seeking_loss(images, both, noise, twin_noise, shift_invariant=True)) == \
        pytest.approx(1 / (2 * 0.5 / 16 + 1e-5), rel=1e-6)


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8])
def test_the_mode_seeking_pairs_do_not_depend_on_the_split(batch: int) -> None:
    from attngan.training.gan_step import mode_seeking_rows

    for world_size in (1, 2, 3, 4):
        parts = [mode_seeking_rows(batch, rank, world_size) for rank in range(world_size)]
        global_rows = [rank * batch + int(r) for rank, part in enumerate(parts) for r in part.rows]
        assert global_rows == list(range(0, batch * world_size, 4))  # every fourth row of the global batch
        assert all(part.pairs == len(global_rows) for part in parts)
        # each process's twins are its slice of the global twin noise, in order
        assert [part.first + i for part in parts for i in range(len(part.rows))] == list(range(len(global_rows)))
        # the processes' mean of weighted per-pair means is the global mean
        losses = torch.arange(len(global_rows), dtype=torch.float64) + 1.0
        means = [part.scale * float(losses[part.first:part.first + len(part.rows)].mean()) if len(part.rows) else 0.0
                 for part in parts]
        assert sum(means) / world_size == pytest.approx(float(losses.mean()))


def test_the_mode_seeking_term_draws_a_quarter_of_the_captions_twice(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from attngan.training import gan as gan_module
    from attngan.training.options import resolve_config

    trainer = _tiny_trainer(tmp_path, "diversity_weight=0.5", size=16, batch_size=8)
    calls: list[tuple[torch.Tensor, ...]] = []
    generator = trainer.g

    def recording_generator(*args: torch.Tensor, eps: torch.Tensor) -> object:
        calls.append((*args, eps))
        return generator(*args, eps=eps)

    terms: list[float] = []
    real_term = gan_module.mode_seeking_loss

    def recording_term(*args: torch.Tensor, shift_invariant: bool) -> torch.Tensor:
        assert all(a.shape[0] == 2 for a in args)  # a quarter of the 8 captions
        assert shift_invariant is False  # the option's default
        loss = real_term(*args, shift_invariant=shift_invariant)
        terms.append(float(loss.detach()))
        return loss

    trainer.g = recording_generator
    monkeypatch.setattr(gan_module, "mode_seeking_loss", recording_term)
    logs = trainer.train_step(next(trainer.stream.iterate(0)))
    (z, sentence, words, mask, eps), = calls
    assert z.shape[0] == sentence.shape[0] == words.shape[0] == mask.shape[0] == eps.shape[0] == 10
    # the twins: captions 0 and 4 and their condition noise again, other image noise
    for x in (sentence, words, mask, eps):
        assert torch.equal(x[8:], x[[0, 4]])
    assert not torch.equal(z[8:], z[[0, 4]])
    assert logs["loss_g_diversity"] == pytest.approx(0.5 * terms[0], rel=1e-6) and terms[0] > 0
    with pytest.raises(ConfigError, match="diversity_weight"):
        resolve_config("gan", "shapes", ["diversity_weight=-1"])


def _tiny_trainer(tmp_path: Path, *sets: str, size: int = 8, batch_size: int = 4):  # type: ignore[no-untyped-def]
    """A GAN trainer of the shapes preset at width 8 on ``size`` scenes, a random DAMSM, and ``sets``."""
    from attngan.training.distributed import DistInfo
    from attngan.training.gan import GANTrainer
    from attngan.training.options import resolve_config

    from .conftest import random_damsm

    base = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "discriminator.channels=8",
            f"data.extra={{size: {size}}}", f"run.batch_size={batch_size}",
            f"damsm={random_damsm(tmp_path / 'damsm')}", f"run.out_dir={tmp_path / 'run'}"]
    return GANTrainer(resolve_config("gan", "shapes", base + list(sets)), DistInfo())
