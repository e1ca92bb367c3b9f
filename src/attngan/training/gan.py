"""AttnGAN training: generator and per-stage discriminators with frozen DAMSM encoders,
as the original ``trainer.py`` (losses, learning rates, EMA of the generator weights).

One step computes what the original computes (``tests/test_training_step.py`` holds it
against the reference modules in fp32); ``run.speed`` (:class:`SpeedOptions`) chooses how:
sub-pixel up-blocks, a folded frozen image encoder, channels-last discriminators, fused Adam,
one backward pass for the discriminators, gradients released after each update, the DAMSM terms'
backward first (the image encoder's activations freed before the discriminators' passes), the
last stage recomputed in the backward pass, and ``torch.compile`` of the modules and loss terms
(:mod:`.compiled`). With
``run.precision`` bf16 (or ``auto`` where bf16 is native) the forward passes run under bf16
autocast with fp32 master weights; the losses are computed in fp32 and checked to be finite.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig, to_dict
from ..data import Batch, build_from_options, collate, example_captions
from ..files import OutputError
from ..hub import EXAMPLES_KEY, ModelBundle, is_model_folder, load_damsm
from ..losses.damsm import HardNegatives
from ..losses.gan import counterfactual_ranking_loss, matching_aware_penalty, mode_seeking_loss
from ..models.discriminator import Discriminator
from ..models.generator import Generator
from ..models.layers import init_weights_original
from ..precision import autocast, resolve_precision
from ..text import check_vocabulary_coverage
from ..version import __version__
from . import checkpoint as ckpt
from .augment import draw_shifts, shift_images
from .compiled import compiler_works
from .distributed import DistInfo, gather, init_distributed, shutdown, use_global_batchnorm
from .ema import EMA
from .encoder_discriminator import EncoderDiscriminator
from .exported import RecalibrationPlan, recalibrated_copy, save_model_folder
from .fast_layers import (
    ChannelsLastInput,
    checkpoint_last_stage,
    fold_frozen_batchnorms,
    release_gradients_after_step,
    update_in_backward,
    use_matmul_logits,
    use_subpixel_up_blocks,
)
from .gan_step import (
    DiscriminatorStep,
    FakeLogits,
    LossTerms,
    Mismatched,
    compile_step,
    mode_seeking_rows,
    next_sample_pairs,
    with_rounded,
    with_twins,
)
from .loop import BatchStream, Trainer, pad_to, require_finite, set_threads
from .memory import keep_freed_memory
from .negatives import encode_captions
from .optim import adam
from .options import GANTrainConfig
from .samples import save_sample_grid, spread_captions
from .warm_start import Modules, start_from_model

log = logging.getLogger(__name__)


class GANTrainer(Trainer):
    """Holds the modules, optimisers and data of one run; :meth:`fit` runs the loop."""

    progress_name = "attngan"
    config_file = "train_config.yaml"

    def __init__(self, cfg: GANTrainConfig, dist: DistInfo) -> None:
        run = cfg.run
        speed = run.speed
        self.dist, self.out, self.step = dist, Path(run.out_dir), 0
        self.started_from: dict[str, Any] | None = None  # init_from a model folder: which, and its steps
        set_threads(run.threads)
        if run.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(run.seed)
        if not cfg.damsm:
            raise ValueError("damsm: give the DAMSM folder written by train-damsm")
        enc = load_damsm(cfg.damsm)
        self.vocab = enc.vocab
        device = dist.device
        self.text_encoder = enc.text_encoder.to(device).eval().requires_grad_(False)
        self.reference_image_encoder = enc.image_encoder.to(device).eval().requires_grad_(False)
        te_cfg = enc.text_encoder.config
        gen_cfg = dataclasses.replace(cfg.generator, text_dim=te_cfg.hidden_dim)
        run = dataclasses.replace(run, precision=resolve_precision(run.precision, device))  # recorded as used
        self.cfg = cfg = dataclasses.replace(cfg, generator=gen_cfg, run=run)
        self.max_words = te_cfg.max_words
        if dist.is_main:
            ckpt.check_writable(self.out)
        self.data = build_from_options(cfg.data, gen_cfg.image_sizes, self.max_words, vocab=self.vocab, seed=run.seed)
        if self.data.vocab != self.vocab:
            raise ValueError(f"vocabulary mismatch: the data set's ({len(self.data.vocab)} words) differs from "
                             f"{Path(cfg.damsm) / 'vocab.json'} ({len(self.vocab)} words)")
        check_vocabulary_coverage(self.data, Path(cfg.damsm) / "vocab.json")

        if speed.keep_heap:
            keep_freed_memory()
        # the frozen image encoder as the step runs it (a folded copy; the reference is exported)
        encoder: nn.Module = self.reference_image_encoder
        if speed.fold_encoder:
            encoder = ChannelsLastInput(fold_frozen_batchnorms(encoder))
        self.image_encoder = encoder

        self.generator = Generator(gen_cfg)
        self.generator.apply(init_weights_original)
        sizes = gen_cfg.image_sizes if gen_cfg.variant == "multi_stage" else gen_cfg.image_sizes[-1:]
        self.stage_of_d = list(range(len(gen_cfg.image_sizes)))[-len(sizes):]
        self.discriminators = nn.ModuleList([
            Discriminator(dataclasses.replace(cfg.discriminator, image_size=s, text_dim=te_cfg.hidden_dim))
            for s in sizes])
        self.discriminators.apply(init_weights_original)
        if dist.enabled:
            use_global_batchnorm(self.generator)
            use_global_batchnorm(self.discriminators)
        self.generator.to(device).train()
        self.discriminators.to(device).train()
        if speed.channels_last:
            self.discriminators.to(memory_format=torch.channels_last)
        if speed.matmul_logits:
            use_matmul_logits(self.discriminators)
        self.encoder_d = (EncoderDiscriminator(cfg, self.reference_image_encoder, enc.image_encoder.config.embedding_dim,
                                               te_cfg.hidden_dim, dist) if cfg.encoder_discriminator > 0 else None)
        self.ema = EMA(self.generator, cfg.ema_decay, cfg.ema_warmup)
        if speed.subpixel:  # after the EMA copy: the shadow keeps the reference layers (it is exported)
            use_subpixel_up_blocks(self.generator)
        if speed.checkpoint_last_stage:
            checkpoint_last_stage(self.generator)
        self.opt_g = adam(self.generator.parameters(), cfg.optim_g, device, speed.fused_adam)
        self.opt_d = [adam(d.parameters(), cfg.optim_d, device, speed.fused_adam) for d in self.discriminators]
        if speed.release_gradients:
            for opt in (self.opt_g, *self.opt_d):
                release_gradients_after_step(opt)
        self.update_in_backward = speed.update_in_backward and not dist.enabled
        if self.update_in_backward:
            for opt in self.opt_d:
                update_in_backward(opt)
        self.noise = torch.Generator().manual_seed(run.seed + 1)
        self.g: Any = DistributedDataParallel(self.generator) if dist.enabled else self.generator
        steps = [DiscriminatorStep(cast(Discriminator, d)) for d in self.discriminators]
        self.fake_logits = [FakeLogits(cast(Discriminator, d)) for d in self.discriminators]
        self.losses = LossTerms()
        self.compiled = speed.compile and compiler_works()
        if self.compiled:
            self._compile(steps)
        self.d_steps: list[Any] = [DistributedDataParallel(s) if dist.enabled else s for s in steps]
        self.stream = BatchStream(self.data, collate, run.batch_size, run.seed, dist, cfg.data.num_workers)

    def _compile(self, steps: list[DiscriminatorStep]) -> None:
        """``run.speed.compile`` (:func:`.gan_step.compile_step`): the discriminators' update stays
        eager with the gradient penalty (compiled graphs do not differentiate twice) and with
        counterfactual captions or rounded images in it (their count varies by batch); so do the
        generator's discriminator passes with counterfactual captions."""
        cfg = self.cfg
        eager_fake = ("counterfactual captions" if cfg.hard_negatives.generator > 0 and cfg.data.counterfactuals
                      else None)
        eager_update = ("gradient penalty" if cfg.gradient_penalty > 0 else "counterfactual captions or rounded images"
                        if cfg.hard_negatives.discriminator or cfg.data.rounded_negatives > 0 else None)
        self.losses = compile_step(self.generator, self.image_encoder, self.fake_logits, steps, eager_fake,
                                   eager_update)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "version": __version__, "config": to_dict(self.cfg),
                "models": {"generator": self.generator.state_dict(), "ema": self.ema.state_dict(),
                           "discriminators": [d.state_dict() for d in self.discriminators],
                           **({"encoder_discriminator": self.encoder_d.state_dict()} if self.encoder_d else {})},
                "optimizers": {"generator": self.opt_g.state_dict(),
                               "discriminators": [o.state_dict() for o in self.opt_d]},
                "rng": {**ckpt.rng_state(), "noise": self.noise.get_state()}, "vocab": self.vocab.words,
                **({"started_from": self.started_from} if self.started_from else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_models(state)
        self.opt_g.load_state_dict(state["optimizers"]["generator"])
        for o, s in zip(self.opt_d, state["optimizers"]["discriminators"], strict=True):
            o.load_state_dict(s)
        ckpt.set_rng_state(state["rng"])
        self.noise.set_state(state["rng"]["noise"])
        self.step = int(state["step"])
        self.started_from = state.get("started_from")

    def _load_models(self, state: dict[str, Any]) -> None:
        words = state.get("vocab")
        if words is not None and list(words) != self.vocab.words:
            raise ValueError(f"it was trained with another vocabulary ({len(words)} words) than "
                             f"{Path(self.cfg.damsm) / 'vocab.json'} ({len(self.vocab)} words)")
        self.generator.load_state_dict(state["models"]["generator"])
        self.ema.load_state_dict(state["models"]["ema"])
        for d, s in zip(self.discriminators, state["models"]["discriminators"], strict=True):
            d.load_state_dict(s)
        if self.encoder_d is not None and "encoder_discriminator" in state["models"]:  # else a fresh head
            self.encoder_d.load_state_dict(state["models"]["encoder_discriminator"])

    def initialise(self) -> None:
        """``init_from``: the generator, its EMA and the discriminators start from another run's
        checkpoint; or, given a model folder, the generator and its EMA start from the folder's
        generator and the discriminators fresh. The step, the optimisers' moments and the random
        state start fresh either way."""
        if not self.cfg.init_from:
            return
        if is_model_folder(self.cfg.init_from):
            self._initialise_from_model(Path(self.cfg.init_from))
            return
        path, state = ckpt.find_checkpoint(self.cfg.init_from, self.checkpoint_dir, "init_from")
        try:
            self._load_models(state)
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ckpt.CheckpointError(f"init_from: {path} does not fit this run: {reason}") from None
        log.info("generator and discriminators start from %s (its step %s)", path, state.get("step"))

    def _initialise_from_model(self, path: Path) -> None:
        """The generator, its EMA and, where the folder keeps them, the discriminators start from a
        model folder (:func:`.warm_start.start_from_model`)."""
        self.started_from = start_from_model(
            path, self.vocab, Path(self.cfg.damsm) / "vocab.json", self.cfg.generator,
            Modules(self.generator, self.ema, list(self.discriminators),
                    self.encoder_d.trained_modules() if self.encoder_d is not None else {}))

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt_g, *self.opt_d, *([self.encoder_d.opt] if self.encoder_d else [])]

    def resolved_config(self) -> dict[str, Any]:
        return {"gan": to_dict(self.cfg), "version": __version__}

    def inference_bundle(self) -> ModelBundle:
        """The EMA generator with the frozen encoders and the vocabulary (the modules are shared)."""
        config = ModelConfig(text_encoder=self.text_encoder.config, generator=self.cfg.generator,
                             image_encoder=self.reference_image_encoder.config, name=self.cfg.name, damsm=self.cfg.loss)
        meta = {"steps": self.step, "data": self.cfg.data.kind, "version": __version__, "seed": self.cfg.run.seed,
                EXAMPLES_KEY: example_captions(self.data, self.vocab, max_words=self.max_words)}
        if self.started_from:  # steps counts the generator's whole training
            meta.update(steps=self.step + int(self.started_from["steps"]), started_from=self.started_from)
        if self.cfg.ema_batchnorm_batches:
            meta["batchnorm_statistics"] = f"recalibrated on {self.cfg.ema_batchnorm_batches} training batches"
        return ModelBundle(config, self.vocab, self.text_encoder, self.exported_generator(), self.reference_image_encoder,
                           meta)

    def exported_generator(self) -> Generator:
        """The EMA generator as exported: with ``ema_batchnorm_batches`` > 0, a copy whose BatchNorm
        statistics are re-estimated for its averaged weights on that many training batches (fixed
        items and noise; the training's random state is untouched); else the EMA module itself."""
        batches = self.cfg.ema_batchnorm_batches
        if batches <= 0:
            return self.ema.shadow
        found = getattr(self, "_recalibrated", None)
        if found is not None and found[0] == self.step:
            return found[1]
        generator = recalibrated_copy(self.ema.shadow, self.cfg.generator, self.data, self.text_encoder, self.max_words,
                                      RecalibrationPlan(batches, self.cfg.run.batch_size, self.cfg.run.seed + 2,
                                                        self.cfg.run.precision, self.dist.device))
        self._recalibrated = (self.step, generator)
        return generator

    def export(self, path: Path | None = None) -> Path:
        """The EMA generator with the encoders and vocabulary, as an inference folder, and the judges
        beside it (:func:`.exported.save_model_folder`)."""
        saved = save_model_folder(self.inference_bundle(), path or self.out / self.export_name, list(self.discriminators),
                                  self.encoder_d.trained_modules() if self.encoder_d is not None else {})
        log.info("exported the EMA generator to %s", saved)
        return saved

    # ----------------------------------------------------------------- one step
    def train_step(self, batch: Batch) -> dict[str, float]:
        cfg, dist, speed = self.cfg, self.dist, self.cfg.run.speed
        dev = dist.device
        tokens = pad_to(batch["tokens"], self.max_words, 1).to(dev)
        lengths = batch["lengths"]
        class_ids = batch["class_ids"].to(dev)
        layout = torch.channels_last if speed.channels_last else torch.contiguous_format
        reals = [batch["images"][i].to(dev, non_blocking=True).contiguous(memory_format=layout)
                 for i in self.stage_of_d]
        b = tokens.shape[0]
        total = b * dist.world_size
        hn = cfg.hard_negatives
        with torch.no_grad():  # the frozen text encoder, once per batch (with the counterfactuals), fp32
            words, sentence, hard = encode_captions(self.text_encoder, batch, self.max_words, dev,
                                                    hn.discriminator or hn.damsm or hn.generator > 0)
        mask = tokens == 0
        z = torch.randn(total, cfg.generator.noise_dim, generator=self.noise)
        eps = torch.randn(total, cfg.generator.condition_dim, generator=self.noise)
        rows = slice(dist.rank * b, (dist.rank + 1) * b)
        z, eps = z[rows].to(dev), eps[rows].to(dev)
        # captions drawn twice (the mode-seeking term): every fourth row of the global batch, so that a
        # run split over processes draws the same pairs as one process
        twins_of = mode_seeking_rows(b, dist.rank, dist.world_size) if cfg.diversity_weight > 0 else None
        inputs, picked = with_twins((z, sentence, words, mask, eps), twins_of, self.noise)
        k = 0 if picked is None else len(picked)
        held = self.step < cfg.generator_hold  # the discriminators alone learn: no graph through the generator
        with torch.set_grad_enabled(not held), autocast(cfg.run.precision, dev):
            out = self.g(*inputs[:4], eps=inputs[4])
        if k:
            twins = out.images[-1][b:]
            out = out._replace(images=[x[:b] for x in out.images], mu=out.mu[:b], logvar=out.logvar[:b],
                               condition=out.condition[:b])
        images = [out.images[i] for i in self.stage_of_d] if cfg.generator.variant == "multi_stage" else out.images
        fakes = [image.contiguous(memory_format=layout) for image in images]

        # discriminators: real / fake / mismatched (real image with the next sample's caption)
        all_sentences = gather(sentence)
        pairs = next_sample_pairs(all_sentences, dist.rank, b, dist.world_size)
        hard_sentence = hard_rows = None  # the filled counterfactual captions [H, D] and their rows [H]
        if hard is not None and (hn.discriminator or hn.generator > 0):
            filled = hard.lengths > 0
            hard_sentence, hard_rows = hard.sentences[filled], filled.nonzero()[:, 0]
        if hn.discriminator and hard_rows is not None:  # (real image, counterfactual caption) pairs
            pairs = pairs._replace(hard_sentence=hard_sentence, hard_rows=hard_rows)
        if "rounded_images" in batch:  # (rounded rendering, own caption) pairs, for the last discriminator
            pairs = with_rounded(pairs, batch["rounded_images"], batch["rounded_valid"], layout)
        losses_d = self._update_discriminators(reals, [f.detach() for f in fakes], sentence, pairs)
        loss_enc_d = None
        if self.encoder_d is not None:  # images moved as the DAMSM term's (shifts drawn for the global batch)
            shifts = [draw_shifts(total, cfg.damsm_shift, self.noise)[rows] for _ in "rf"] if cfg.damsm_shift else None
            loss_enc_d = self.encoder_d.update_on_images(self.image_encoder, reals[-1], fakes[-1].detach(), sentence,
                                                         pairs, shifts)

        logs = {f"loss_d{i}": float(v.detach()) for i, v in enumerate(losses_d)}
        if loss_enc_d is not None:
            logs["loss_d_enc"] = loss_enc_d
        if held:  # a trained generator, new judges (generator_hold)
            self.step += 1
            return logs

        # generator: DAMSM on the last stage, adversarial terms, KL
        g, weight = cfg.loss, self.damsm_weight()
        last = fakes[-1].detach().requires_grad_(True) if speed.encoder_first else fakes[-1]
        scored = last
        if cfg.damsm_shift > 0:  # drawn for the global batch, so every process draws the same
            scored = shift_images(last, draw_shifts(total, cfg.damsm_shift, self.noise)[rows])
        with autocast(cfg.run.precision, dev):
            if speed.checkpoint_encoder:
                regions, codes = checkpoint(self.image_encoder, scored, use_reentrant=False)
            else:
                regions, codes = self.image_encoder(scored)
        # the generator's term through the encoder discriminator (the head's weights get no gradient)
        enc_g = self.encoder_d.generator_loss(regions.float(), sentence, scored) if self.encoder_d is not None else None
        negatives = None
        if hard is not None and hn.damsm:
            negatives = HardNegatives(gather(hard.words), gather(hard.sentences), gather(hard.lengths))
        damsm = self.losses.damsm(gather(regions.float()), gather(codes.float()), gather(words), all_sentences,
                                  gather(lengths.to(dev)), gather(class_ids), g.gamma1, g.gamma2, g.gamma3, negatives)
        if speed.encoder_first:  # the gradient at the last image now; the encoder's activations go
            weighted = (damsm["w0"] + damsm["w1"] + damsm["s0"] + damsm["s1"]) * weight
            if enc_g is not None:
                weighted = weighted + enc_g
            require_finite(self.step, {"loss_damsm": weighted})
            (grad_last,) = torch.autograd.grad(weighted, last)
            damsm = {k: v.detach() for k, v in damsm.items()}
        self.discriminators.requires_grad_(False)
        ranked = hn.generator > 0 and hard_rows is not None  # (generated image, counterfactual caption) pairs
        with autocast(cfg.run.precision, dev):
            generated = [f(fake, sentence, hard_sentence if ranked else None, hard_rows if ranked else None)
                         for f, fake in zip(self.fake_logits, fakes, strict=True)]
        adversarial = [(out_d.cond, out_d.uncond) for out_d in generated]
        # compiled, a weight that changes during the warm-up is a tensor input (a float would be built in)
        loss = self.losses.generator(adversarial, damsm, out.mu, out.logvar,
                                     torch.tensor(weight) if self.compiled else weight, cfg.kl_weight,
                                     cfg.adversarial_loss)
        self.discriminators.requires_grad_(True)
        if enc_g is not None:  # in the backward pass through the last image already with encoder_first
            loss = {**loss, "total": loss["total"] + (enc_g.detach() if speed.encoder_first else enc_g)}
        diversity = None
        if twins_of is not None and picked is not None:  # the processes' mean is the global batch's mean
            diversity = cfg.diversity_weight * twins_of.scale * mode_seeking_loss(
                out.images[-1][picked], twins, z[picked], inputs[0][b:],
                shift_invariant=cfg.diversity_shift_invariant) if k else torch.zeros((), device=dev)
            loss = {**loss, "total": loss["total"] + diversity}
        ranking = None
        if ranked:
            ranking = hn.generator * torch.stack([counterfactual_ranking_loss(out_d.cond[hard_rows], out_d.cond_hard)
                                                  for out_d in generated]).sum()
            loss = {**loss, "total": loss["total"] + ranking}
        require_finite(self.step, {"loss_g": loss["total"]})
        self.opt_g.zero_grad(set_to_none=True)
        if speed.encoder_first:
            torch.autograd.backward([loss["total"], fakes[-1]], [None, grad_last])
        else:
            loss["total"].backward()
        self.opt_g.step()
        self.ema.update(self.generator)
        self.step += 1
        logs.update(loss_g=float(loss["total"].detach()), loss_g_adv=float(loss["adversarial"].detach()),
                    loss_damsm_w=float(loss["damsm_words"].detach()),
                    loss_damsm_s=float(loss["damsm_sentence"].detach()), loss_kl=float(loss["kl"].detach()))
        optional = {"loss_g_ranking": ranking, "loss_g_diversity": diversity, "loss_g_enc": enc_g}
        logs.update({name: float(v.detach()) for name, v in optional.items() if v is not None})
        return logs

    def damsm_weight(self) -> float:
        """The generator's DAMSM weight at this step: ``loss.weight``, reached linearly over the first
        ``damsm_warmup`` steps (from 0)."""
        warmup = self.cfg.damsm_warmup
        return self.cfg.loss.weight * (min(1.0, self.step / warmup) if warmup > 0 else 1.0)

    def _update_discriminators(self, reals: Sequence[torch.Tensor], fakes: Sequence[torch.Tensor],
                               sentence: torch.Tensor, pairs: Mismatched) -> list[torch.Tensor]:
        """One Adam update of every discriminator; returns their losses (with the matching-aware
        gradient penalty when ``gradient_penalty`` > 0). With ``one_backward`` the summed losses go
        through one backward pass (each discriminator's parameters get the gradient of their own
        term only, as in separate passes)."""
        cfg = self.cfg
        groups = [list(range(len(self.d_steps)))] if cfg.run.speed.one_backward else [[i] for i in
                                                                                      range(len(self.d_steps))]
        parts: list[torch.Tensor] = []
        for group in groups:
            losses = [self._discriminator_loss(i, reals[i], fakes[i], sentence, pairs) for i in group]
            require_finite(self.step, {f"loss_d{i}": loss for i, loss in zip(group, losses, strict=True)})
            for i in group:
                self.opt_d[i].zero_grad(set_to_none=True)
            total = losses[0]
            for loss in losses[1:]:
                total = total + loss
            total.backward()
            for i in group:
                if not self.update_in_backward:  # else each weight was updated in the backward pass
                    self.opt_d[i].step()
            parts += losses
        return parts

    def _discriminator_loss(self, i: int, real: torch.Tensor, fake: torch.Tensor, sentence: torch.Tensor,
                            pairs: Mismatched) -> torch.Tensor:
        """Discriminator ``i``'s loss on real, fake and mismatched pairs (and its gradient penalty)."""
        cfg = self.cfg
        penalise = cfg.gradient_penalty > 0
        if penalise:  # gradients with respect to the real images and their sentences
            real = real.detach().requires_grad_(True)
            sentence = sentence.detach().requires_grad_(True)
        last = i == len(self.d_steps) - 1  # the rounded images are drawn at the last stage's size
        with autocast(cfg.run.precision, self.dist.device):
            logits = self.d_steps[i](real, fake, sentence, pairs.sentence, pairs.rows, pairs.hard_sentence,
                                     pairs.hard_rows, pairs.rounded if last else None,
                                     pairs.rounded_rows if last else None)
        _, (loss,) = self.losses.discriminators([logits], pairs.scale, cfg.adversarial_loss, pairs.hard_rows,
                                                cfg.hard_negatives.discriminator_ranking)
        if penalise:
            loss = loss + matching_aware_penalty(logits.cond_real, [real, sentence], cfg.gradient_penalty)
        return loss

    def step_logs(self) -> dict[str, float]:
        logs = {"ema_decay": self.ema.current_decay()}
        if self.cfg.damsm_warmup:
            logs["damsm_weight"] = self.damsm_weight()
        return logs

    # ----------------------------------------------------------------- samples
    def after_step(self) -> None:
        every = self.cfg.run.sample_every
        if every and self.step % every == 0:
            self.save_samples_safely()
        every = self.cfg.run.eval_every
        if every and self.step % every == 0:
            self.evaluate_safely()

    def evaluate_safely(self) -> bool:
        """The ``eval`` section's metrics of the EMA generator through the evaluation engine, appended
        to ``<run>/evaluations.jsonl`` (:mod:`.periodic_eval`); a failure is logged, never fatal."""
        from .periodic_eval import evaluate_run

        try:
            evaluate_run(self.inference_bundle(), self.cfg.data, self.cfg.eval, self.dist.device,
                         self.cfg.run.precision, self.out, self.step)
            return True
        except Exception:
            log.exception("could not evaluate at step %d; training goes on", self.step)
            return False

    def after_export(self) -> None:
        self.save_samples_safely()

    def save_samples_safely(self) -> bool:
        """:meth:`save_samples`, logging instead of raising: a sample grid never stops a run."""
        try:
            self.save_samples()
            return True
        except OutputError as exc:
            log.error("%s; training goes on without this sample grid", exc)
        except Exception:
            log.exception("could not draw the sample grid at step %d; training goes on", self.step)
        return False

    def save_samples(self) -> None:
        """The sample grid of the fixed captions (:func:`.samples.save_sample_grid`) from the EMA weights
        in the run's precision."""
        save_sample_grid(self.inference_bundle(), self.sample_captions(), self.dist.device, self.cfg.run.precision,
                         self.out / "samples", self.step)

    def sample_captions(self, n: int = 8) -> list[str]:
        """``n`` fixed captions of the training data, spread over it."""
        if getattr(self, "_sample_captions", None) is None:
            self._sample_captions = spread_captions(self.data, self.vocab, n)
        return self._sample_captions


def train_gan(cfg: GANTrainConfig, resume: bool = False) -> Path:
    """Train AttnGAN; returns the exported inference folder ``<out_dir>/model``."""
    dist = init_distributed(cfg.run.device)
    try:
        return GANTrainer(cfg, dist).fit(resume)
    finally:
        shutdown()

