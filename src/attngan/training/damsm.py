"""DAMSM pretraining: the text and image encoders, trained together with the word and
sentence losses (paper section 3.3), as the original ``pretrain_DAMSM.py``."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import ConfigError, to_dict
from ..data import Batch, build_from_options, collate
from ..hub import DAMSMEncoders, save_damsm
from ..losses.damsm import HardNegatives, ImageNegatives, damsm_losses
from ..models.image_encoder import InceptionImageEncoder, build_image_encoder, load_inception_imagenet_weights
from ..models.text_encoder import TextEncoder
from ..precision import autocast, full_precision, resolve_precision
from ..version import __version__
from . import checkpoint as ckpt
from .distributed import DistInfo, gather, init_distributed, shutdown, use_global_batchnorm
from .loop import BatchStream, Trainer, require_finite, set_threads
from .memory import keep_freed_memory
from .negatives import encode_captions
from .optim import adam
from .options import DAMSMTrainConfig

log = logging.getLogger(__name__)
M = TypeVar("M", bound=torch.nn.Module)


def damsm_step_losses(text_encoder: Any, image_encoder: Any, batch: Batch, cfg: DAMSMTrainConfig,
                      device: torch.device) -> dict[str, torch.Tensor]:
    """The four DAMSM losses on one (global) batch; features are gathered over processes. With
    counterfactual captions in the batch (``data.counterfactuals``) they are each image's hard
    negatives in the image->caption terms; with rounded negatives (``data.rounded_negatives``) each
    caption's rounded image is a hard negative of the caption->image terms.

    Under bf16 autocast the image encoder runs in bf16; the text encoder and the losses in fp32.
    """
    lengths = batch["lengths"]
    with full_precision(device):  # the RNN in fp32 (see attngan.precision)
        words, sentence, hard = encode_captions(text_encoder, batch, cfg.text_encoder.max_words, device)
    images = batch["images"][-1].to(device, non_blocking=True)
    if cfg.run.speed.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    rounded = None
    if "rounded_images" in batch:
        both = torch.cat((images, batch["rounded_images"].to(device, non_blocking=True).to(images)))
        if cfg.run.speed.channels_last:
            both = both.contiguous(memory_format=torch.channels_last)
        all_regions, all_codes = image_encoder(both)  # one pass: the BatchNorm statistics of both halves
        b = images.shape[0]
        regions, codes = all_regions[:b], all_codes[:b]
        valid = batch["rounded_valid"].to(device)
        rounded = ImageNegatives(gather(all_regions[b:]), gather(all_codes[b:]), gather(valid))
    else:
        regions, codes = image_encoder(images)
    g = cfg.loss
    if hard is not None:
        hard = HardNegatives(gather(hard.words), gather(hard.sentences), gather(hard.lengths))
    losses = damsm_losses(gather(regions), gather(codes), gather(words), gather(sentence), gather(lengths.to(device)),
                          gather(batch["class_ids"].to(device)), g.gamma1, g.gamma2, g.gamma3, hard, rounded)
    return {f"loss_{k}": v for k, v in losses.items()}


class DAMSMTrainer(Trainer):
    """Holds the encoders, optimiser and data of one DAMSM run; :meth:`fit` runs the loop."""

    progress_name = "damsm"
    checkpoint_dir = "checkpoints-damsm"
    config_file = "damsm_config.yaml"
    export_name = "damsm"

    def __init__(self, cfg: DAMSMTrainConfig, dist: DistInfo) -> None:
        run = cfg.run
        self.dist, self.out, self.step = dist, Path(run.out_dir), 0
        set_threads(run.threads)
        if run.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(run.seed + dist.rank)
        if dist.is_main:
            ckpt.check_writable(self.out)
        self.data = build_from_options(cfg.data, (cfg.image_encoder.image_size,), cfg.text_encoder.max_words,
                                       seed=run.seed)
        self.vocab = self.data.vocab
        run = dataclasses.replace(run, precision=resolve_precision(run.precision, dist.device))  # recorded as used
        self.cfg = cfg = dataclasses.replace(
            cfg, text_encoder=dataclasses.replace(cfg.text_encoder, vocab_size=len(self.vocab)), run=run)
        device = dist.device
        self.text_encoder = TextEncoder(cfg.text_encoder)
        self.text_encoder.reset_parameters_original()
        self.image_encoder = build_image_encoder(cfg.image_encoder)
        reset = getattr(self.image_encoder, "reset_parameters_original", None)
        if reset is not None:
            reset()
        if cfg.imagenet_weights:
            from ..untrusted import load_state_dict_file

            if not isinstance(self.image_encoder, InceptionImageEncoder):
                raise ConfigError("ImageNet Inception weights need image_encoder.kind inception", "imagenet_weights")
            load_inception_imagenet_weights(self.image_encoder, load_state_dict_file(cfg.imagenet_weights))
        if dist.enabled:  # the losses cover the global batch; so do the image encoder's batch statistics
            use_global_batchnorm(self.image_encoder)
        self.text_encoder.to(device).train()
        self.image_encoder.to(device).train()
        if run.speed.channels_last:
            self.image_encoder.to(memory_format=torch.channels_last)
        if run.speed.keep_heap:
            keep_freed_memory()
        params = [p for m in (self.text_encoder, self.image_encoder) for p in m.parameters() if p.requires_grad]
        self.optimizer = adam(params, cfg.optim, device, run.speed.fused_adam)
        self.stream = BatchStream(self.data, collate, run.batch_size, run.seed, dist, cfg.data.num_workers)
        self.te: Any = self.text_encoder
        self.ie: Any = self.image_encoder
        if dist.enabled:
            self.te = DistributedDataParallel(self.text_encoder)
            if any(p.requires_grad for p in self.image_encoder.parameters()):
                self.ie = DistributedDataParallel(self.image_encoder)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "version": __version__, "config": to_dict(self.cfg),
                "models": {"text_encoder": self.text_encoder.state_dict(),
                           "image_encoder": self.image_encoder.state_dict()},
                "optimizers": {"encoders": self.optimizer.state_dict()}, "rng": ckpt.rng_state(),
                "vocab": self.vocab.words}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        words = state.get("vocab")
        if words is not None and list(words) != self.vocab.words:
            raise ValueError(f"it was trained with another vocabulary ({len(words)} words) than the data set's "
                             f"({len(self.vocab)} words)")
        self.text_encoder.load_state_dict(state["models"]["text_encoder"])
        self.image_encoder.load_state_dict(state["models"]["image_encoder"])
        self.optimizer.load_state_dict(state["optimizers"]["encoders"])
        ckpt.set_rng_state(state["rng"])
        self.step = int(state["step"])

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def resolved_config(self) -> dict[str, Any]:
        return {"damsm": to_dict(self.cfg), "version": __version__}

    # ----------------------------------------------------------------- one step
    def train_step(self, batch: Batch) -> dict[str, float]:
        cfg, device = self.cfg, self.dist.device
        _, index = self.stream.position(self.step)
        if index == 0 and self.step > 0:  # the original decays the learning rate once per epoch
            for group in self.optimizer.param_groups:
                group["lr"] = max(group["lr"] * cfg.lr_decay_per_epoch, cfg.optim.lr / 10)
        with autocast(cfg.run.precision, device):
            losses = damsm_step_losses(self.te, self.ie, batch, cfg, device)
        require_finite(self.step, losses)
        terms = list(losses.values())
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.text_encoder.parameters(), cfg.rnn_grad_clip)
        self.optimizer.step()
        self.step += 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        return {**values, "loss": sum(values.values())}

    def step_logs(self) -> dict[str, float]:
        epoch, _ = self.stream.position(max(self.step - 1, 0))
        return {"lr": self.optimizer.param_groups[0]["lr"], "epoch": epoch}

    def export(self, path: Path | None = None) -> Path:
        """The encoders and vocabulary as a DAMSM folder (``<run>/damsm`` by default)."""
        path = path or self.out / self.export_name
        meta = {"steps": self.step, "data": self.cfg.data.kind, "version": __version__}
        encoders = DAMSMEncoders(_plain_copy(self.text_encoder), _plain_copy(self.image_encoder), self.vocab, meta)
        save_damsm(encoders, path)
        log.info("exported DAMSM encoders to %s", path)
        return path


def train_damsm(cfg: DAMSMTrainConfig, resume: bool = False) -> Path:
    """Train DAMSM encoders; returns the exported folder ``<out_dir>/damsm``."""
    dist = init_distributed(cfg.run.device)
    try:
        return DAMSMTrainer(cfg, dist).fit(resume)
    finally:
        shutdown()


def _plain_copy(module: M) -> M:
    """A CPU, eval-mode, contiguous (not channels-last) copy for export."""
    import copy

    out = copy.deepcopy(module).cpu().eval()
    return out.to(memory_format=torch.contiguous_format)
