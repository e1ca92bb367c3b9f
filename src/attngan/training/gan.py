"""AttnGAN training: generator and per-stage discriminators with frozen DAMSM encoders,
as the original ``trainer.py`` (losses, learning rates, EMA of the generator weights)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..config import ModelConfig, to_dict
from ..fast import resolve_precision
from ..hub import ModelBundle, load_damsm, save_pretrained
from ..losses.damsm import sentence_loss, words_loss
from ..losses.gan import discriminator_loss, generator_adversarial_loss, kl_loss
from ..models.discriminator import Discriminator
from ..models.generator import Generator
from ..models.layers import init_weights_original
from . import checkpoint as ckpt
from .damsm import _autocast, _collate, build_data
from .distributed import (
    DistInfo,
    barrier,
    gather,
    init_distributed,
    mean_over_processes,
    shutdown,
    use_global_batchnorm,
)
from .ema import EMA
from .loop import BatchStream, MetricsSink, StopFlag, pad_to, set_threads, write_resolved_config
from .options import GANTrainConfig

log = logging.getLogger(__name__)


class DiscriminatorStep(nn.Module):
    """One forward for a discriminator update: logits for real, fake and mismatched pairs."""

    def __init__(self, discriminator: Discriminator) -> None:
        super().__init__()
        self.d = discriminator

    def forward(self, real: torch.Tensor, fake: torch.Tensor, sentence: torch.Tensor,
                wrong_sentence: torch.Tensor, wrong_rows: torch.Tensor) -> dict[str, torch.Tensor | None]:
        real_f, fake_f = self.d(real), self.d(fake)
        cond_real, uncond_real = self.d.logits(real_f, sentence)
        cond_fake, uncond_fake = self.d.logits(fake_f, sentence)
        cond_wrong = self.d.conditional_head(real_f[wrong_rows], wrong_sentence)
        return {"cond_real": cond_real, "cond_fake": cond_fake, "cond_wrong": cond_wrong,
                "uncond_real": uncond_real, "uncond_fake": uncond_fake}


def train_gan(cfg: GANTrainConfig, resume: bool = False) -> Path:
    """Train AttnGAN; returns the exported inference folder ``<out_dir>/model``."""
    dist = init_distributed(cfg.run.device)
    try:
        return GANTrainer(cfg, dist).fit(resume)
    finally:
        shutdown()


class GANTrainer:
    """Holds the modules, optimisers and data of one run; ``fit`` runs the loop."""

    def __init__(self, cfg: GANTrainConfig, dist: DistInfo) -> None:
        run = cfg.run
        self.dist = dist
        self.out = Path(run.out_dir)
        set_threads(run.threads)
        if run.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(run.seed)
        if not cfg.damsm:
            raise ValueError("damsm: give the DAMSM folder written by train-damsm")
        enc = load_damsm(cfg.damsm)
        self.vocab = enc.vocab
        self.text_encoder = enc.text_encoder.to(dist.device).eval().requires_grad_(False)
        self.image_encoder = enc.image_encoder.to(dist.device).eval().requires_grad_(False)
        te_cfg = enc.text_encoder.config
        gen_cfg = dataclasses.replace(cfg.generator, text_dim=te_cfg.hidden_dim)
        run = dataclasses.replace(run, precision=resolve_precision(run.precision, dist.device))  # recorded as used
        self.cfg = cfg = dataclasses.replace(cfg, generator=gen_cfg, run=run)
        self.max_words = te_cfg.max_words
        if dist.is_main:
            ckpt.check_writable(self.out)
        self.data = build_data(cfg.data, gen_cfg.image_sizes, self.max_words, vocab=self.vocab, seed=run.seed)
        if self.data.vocab != self.vocab:
            raise ValueError(f"vocabulary mismatch: the data set's ({len(self.data.vocab)} words) differs from "
                             f"{Path(cfg.damsm) / 'vocab.json'} ({len(self.vocab)} words)")
        check_vocabulary_coverage(self.data, Path(cfg.damsm) / "vocab.json")
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
        self.generator.to(dist.device).train()
        self.discriminators.to(dist.device).train()
        self.ema = EMA(self.generator, cfg.ema_decay, cfg.ema_warmup)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.optim_g.lr,
                                      betas=(cfg.optim_g.beta1, cfg.optim_g.beta2))
        self.opt_d = [torch.optim.Adam(d.parameters(), lr=cfg.optim_d.lr, betas=(cfg.optim_d.beta1, cfg.optim_d.beta2))
                      for d in self.discriminators]
        self.noise = torch.Generator().manual_seed(run.seed + 1)
        self.step = 0
        self.g: Any = DistributedDataParallel(self.generator) if dist.enabled else self.generator
        steps = [DiscriminatorStep(d) for d in self.discriminators]
        self.d_steps: list[Any] = [DistributedDataParallel(s) if dist.enabled else s for s in steps]
        self.stream = BatchStream(self.data, _collate(), run.batch_size, run.seed, dist, cfg.data.num_workers)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "version": __version__, "config": to_dict(self.cfg),
                "models": {"generator": self.generator.state_dict(), "ema": self.ema.state_dict(),
                           "discriminators": [d.state_dict() for d in self.discriminators]},
                "optimizers": {"generator": self.opt_g.state_dict(),
                               "discriminators": [o.state_dict() for o in self.opt_d]},
                "rng": {**ckpt.rng_state(), "noise": self.noise.get_state()}, "vocab": self.vocab.words}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        words = state.get("vocab")
        if words is not None and list(words) != self.vocab.words:
            raise ValueError(f"it was trained with another vocabulary ({len(words)} words) than "
                             f"{Path(self.cfg.damsm) / 'vocab.json'} ({len(self.vocab)} words)")
        self.generator.load_state_dict(state["models"]["generator"])
        self.ema.load_state_dict(state["models"]["ema"])
        for d, s in zip(self.discriminators, state["models"]["discriminators"], strict=True):
            d.load_state_dict(s)
        self.opt_g.load_state_dict(state["optimizers"]["generator"])
        for o, s in zip(self.opt_d, state["optimizers"]["discriminators"], strict=True):
            o.load_state_dict(s)
        ckpt.set_rng_state(state["rng"])
        self.noise.set_state(state["rng"]["noise"])
        self.step = int(state["step"])

    def export(self, path: Path | None = None) -> Path:
        """The EMA generator with the encoders and vocabulary, as an inference folder."""
        path = path or self.out / "model"
        te = self.text_encoder
        config = ModelConfig(text_encoder=te.config, generator=self.cfg.generator,
                             image_encoder=self.image_encoder.config, name=self.cfg.name)
        generator = Generator(self.cfg.generator)
        generator.load_state_dict(self.ema.shadow.state_dict())
        meta = {"steps": self.step, "data": self.cfg.data.kind, "version": __version__,
                "seed": self.cfg.run.seed}
        bundle = ModelBundle(config, self.vocab, _cpu_copy(te), generator.eval(), _cpu_copy(self.image_encoder), meta)
        return save_pretrained(bundle, path)

    # ----------------------------------------------------------------- one step
    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        cfg, dev, dist = self.cfg, self.dist.device, self.dist
        tokens = pad_to(batch["tokens"], self.max_words, 1).to(dev)
        lengths = batch["lengths"]
        class_ids = batch["class_ids"].to(dev)
        reals = [batch["images"][i].to(dev) for i in self.stage_of_d]
        b = tokens.shape[0]
        total = b * dist.world_size
        with torch.no_grad():
            words, sentence = self.text_encoder(tokens, lengths)
        mask = tokens == 0
        z = torch.randn(total, cfg.generator.noise_dim, generator=self.noise)
        eps = torch.randn(total, cfg.generator.condition_dim, generator=self.noise)
        rows = slice(dist.rank * b, (dist.rank + 1) * b)
        z, eps = z[rows].to(dev), eps[rows].to(dev)
        with _autocast(cfg.run.precision, dev):
            out = self.g(z, sentence, words, mask, eps=eps)
        fakes = [out.images[i] for i in self.stage_of_d] if cfg.generator.variant == "multi_stage" else out.images

        # discriminators: real / fake / mismatched (real image with the next sample's caption)
        all_sentences = gather(sentence)
        global_rows = torch.arange(dist.rank * b, (dist.rank + 1) * b, device=dev)
        wrong_rows = (global_rows + 1 < total).nonzero().flatten()
        wrong_sentence = all_sentences[global_rows[wrong_rows] + 1]
        wrong_scale = len(wrong_rows) * dist.world_size / (total - 1)
        logs: dict[str, float] = {}
        for i, (step_d, opt) in enumerate(zip(self.d_steps, self.opt_d, strict=True)):
            with _autocast(cfg.run.precision, dev):
                lg = step_d(reals[i], fakes[i].detach(), sentence, wrong_sentence, wrong_rows)
                loss_d = discriminator_loss(lg["cond_real"].float(), lg["cond_fake"].float(), lg["cond_wrong"].float(),
                                            _f(lg["uncond_real"]), _f(lg["uncond_fake"]), wrong_scale)
            opt.zero_grad(set_to_none=True)
            loss_d.backward()
            opt.step()
            logs[f"loss_d{i}"] = float(loss_d.detach())

        # generator: adversarial terms, DAMSM on the last stage, KL
        self.discriminators.requires_grad_(False)
        with _autocast(cfg.run.precision, dev):
            loss_adv = sentence.new_zeros(())
            for i, d in enumerate(self.discriminators):
                cond, uncond = d.logits(d(fakes[i]), sentence)
                loss_adv = loss_adv + generator_adversarial_loss(cond.float(), _f(uncond))
            regions, codes = self.image_encoder(fakes[-1])
            g = cfg.loss
            all_classes, all_lengths = gather(class_ids), gather(lengths.to(dev))
            w0, w1, _ = words_loss(gather(regions.float()), gather(words), all_lengths, all_classes,
                                   g.gamma1, g.gamma2, g.gamma3)
            s0, s1 = sentence_loss(gather(codes.float()), all_sentences, all_classes, g.gamma3)
            loss_damsm = (w0 + w1 + s0 + s1) * g.weight
            loss_kl = kl_loss(out.mu.float(), out.logvar.float()) * cfg.kl_weight
            loss_g = loss_adv + loss_damsm + loss_kl
        self.discriminators.requires_grad_(True)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.ema.update(self.generator)
        self.step += 1
        logs.update(loss_g=float(loss_g.detach()), loss_g_adv=float(loss_adv.detach()),
                    loss_damsm_w=float((w0 + w1).detach()), loss_damsm_s=float((s0 + s1).detach()),
                    loss_kl=float(loss_kl.detach()))
        return logs

    # ----------------------------------------------------------------- loop
    def fit(self, resume: bool = False) -> Path:
        run, dist = self.cfg.run, self.dist
        folder = self.out / "checkpoints"
        if resume:
            found = ckpt.latest_checkpoint(folder)
            if found is None:
                raise ckpt.CheckpointError(f"--resume: no checkpoint in {folder}")
            try:
                self.load_state_dict(found[1])
            except (KeyError, RuntimeError, TypeError, ValueError) as exc:
                reason = " ".join(str(exc).split())[:300]
                raise ckpt.CheckpointError(f"{found[0]} does not fit this run: {reason}") from None
            log.info("resumed from %s at step %d", found[0], self.step)
        else:
            ckpt.check_fresh(folder)
        if dist.is_main:
            need = ckpt.state_bytes(self.state_dict()) + ckpt.pending_optimizer_bytes([self.opt_g, *self.opt_d])
            ckpt.check_space(folder, need, run.keep_checkpoints)
            write_resolved_config(self.out, {"gan": to_dict(self.cfg), "version": __version__}, "train_config.yaml")
        sink = MetricsSink(self.out, dist.is_main, run.max_steps, self.step, "attngan")
        deadline = time.time() + run.time_limit_minutes * 60 if run.time_limit_minutes > 0 else None
        with StopFlag() as stop:
            for batch in self.stream.iterate(self.step):
                if self.step >= run.max_steps or stop.requested or (deadline is not None and time.time() > deadline):
                    break
                t0 = time.time()
                logs = self.train_step(batch)
                sink.advance()
                if self.step % run.log_every == 0 or self.step == run.max_steps:
                    # each process's losses are over its part of the batch: the mean is the global batch's
                    logs = mean_over_processes(logs, dist.device)
                    if dist.is_main:
                        sink.log(self.step, {**logs, "step_s": time.time() - t0, "ema_decay": self.ema.current_decay()})
                if dist.is_main and run.sample_every and self.step % run.sample_every == 0:
                    self.save_samples()
                if dist.is_main and self.step % run.checkpoint_every == 0:
                    ckpt.save_checkpoint(folder, self.step, self.state_dict(), run.keep_checkpoints)
        sink.close()
        path = self.out / "model"
        if dist.is_main:
            ckpt.save_checkpoint(folder, self.step, self.state_dict(), run.keep_checkpoints)
            path = self.export()
            self.save_samples()
            log.info("exported the EMA generator to %s", path)
        barrier()  # every process ends together, once the model is exported
        return path

    def save_samples(self) -> None:
        """A grid of fixed captions and noise (every stage) and an attention sheet, from the EMA weights."""
        from ..pipeline import AttnGANPipeline
        from ..viz import attention_sheet, sample_grid

        captions = self.sample_captions()
        bundle = ModelBundle(ModelConfig(text_encoder=self.text_encoder.config, generator=self.cfg.generator),
                             self.vocab, self.text_encoder, self.ema.shadow)
        pipe = AttnGANPipeline(bundle, device=self.dist.device)
        out = pipe(captions, seed=list(range(len(captions))))
        folder = self.out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        sample_grid(out.images, captions).save(folder / f"step-{self.step:08d}.png")
        if out.attention_maps:
            attention_sheet(out, 0).save(folder / f"step-{self.step:08d}-attention.png")

    def sample_captions(self, n: int = 8) -> list[str]:
        test = getattr(self, "_sample_captions", None)
        if test is None:
            items = [self.data[i] for i in range(0, len(self.data), max(len(self.data) // n, 1))][:n]
            test = [" ".join(self.vocab.decode(it["tokens"].tolist())) for it in items]
            self._sample_captions = test
        return test


MAX_UNKNOWN_WORDS = 0.1  # fraction of a data set's words the DAMSM vocabulary may lack


def check_vocabulary_coverage(data: Any, vocab_file: Path) -> None:
    """Refuse a data set more than ``MAX_UNKNOWN_WORDS`` of whose words are not in the DAMSM
    vocabulary (its encoders were trained on another data set): such words would be dropped
    from every caption. Fewer unknown words are a warning."""
    unknown: dict[str, int] = getattr(data, "unknown_words", None) or {}
    total = int(getattr(data, "num_words", 0))
    if not unknown or not total:
        return
    fraction = sum(unknown.values()) / total
    shown = ", ".join(sorted(unknown, key=lambda w: -unknown[w])[:8])
    message = f"{fraction:.0%} of the data set's words are not in {vocab_file} (most frequent: {shown})"
    if fraction > MAX_UNKNOWN_WORDS:
        raise ValueError(f"vocabulary mismatch: {message}; were the DAMSM encoders trained on another data set?")
    log.warning("%s; they are dropped from the captions", message)


def _f(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


def _cpu_copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module).cpu().eval()

