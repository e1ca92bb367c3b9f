"""DAMSM pretraining: the text and image encoders, trained together with the word and
sentence losses (paper section 3.3), as the original ``pretrain_DAMSM.py``."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..config import to_dict
from ..hub import DAMSMEncoders, save_damsm
from ..losses.damsm import sentence_loss, words_loss
from ..models.image_encoder import build_image_encoder, load_inception_imagenet_weights
from ..models.text_encoder import TextEncoder
from ..precision import autocast, full_precision, resolve_precision
from . import checkpoint as ckpt
from .distributed import DistInfo, gather, init_distributed, shutdown
from .loop import BatchStream, MetricsSink, StopFlag, pad_to, set_threads, write_resolved_config
from .options import DAMSMTrainConfig

log = logging.getLogger(__name__)


def build_data(cfg: Any, image_sizes: tuple[int, ...], max_words: int, split: str = "train", train: bool = True,
               seed: int = 0, vocab: Any = None) -> Any:
    """The data set named by ``cfg`` (a :class:`DataOptions`)."""
    from ..data import build_dataset

    kwargs: dict[str, Any] = dict(cfg.extra)
    if vocab is not None:
        kwargs["vocab"] = vocab
    if cfg.captions_per_image is not None:
        kwargs["captions_per_image"] = cfg.captions_per_image
    if cfg.cache_dir is not None:
        kwargs["cache_dir"] = cfg.cache_dir
    if cfg.kind in ("cub", "coco"):
        kwargs["missing"] = cfg.missing
    return build_dataset(cfg.kind, cfg.root, split=split, image_sizes=image_sizes, max_words=max_words,
                         train=train, seed=seed, skip_bad=cfg.skip_bad, **kwargs)


def damsm_step_losses(text_encoder: Any, image_encoder: Any, batch: dict[str, Any], cfg: DAMSMTrainConfig,
                      device: torch.device) -> dict[str, torch.Tensor]:
    """The four DAMSM losses on one (global) batch; features are gathered over processes."""
    max_words = cfg.text_encoder.max_words
    tokens = pad_to(batch["tokens"], max_words, 1).to(device)
    lengths = batch["lengths"]
    with full_precision(device):  # the RNN in fp32 (see attngan.precision)
        words, sentence = text_encoder(tokens, lengths)
    regions, codes = image_encoder(batch["images"][-1].to(device))
    regions, codes = regions.float(), codes.float()
    class_ids = gather(batch["class_ids"].to(device))
    all_lengths = gather(lengths.to(device))
    g = cfg.loss
    w0, w1, _ = words_loss(gather(regions), gather(words), all_lengths, class_ids, g.gamma1, g.gamma2, g.gamma3)
    s0, s1 = sentence_loss(gather(codes), gather(sentence), class_ids, g.gamma3)
    return {"loss_w0": w0, "loss_w1": w1, "loss_s0": s0, "loss_s1": s1}


def train_damsm(cfg: DAMSMTrainConfig, resume: bool = False) -> Path:
    """Train DAMSM encoders; returns the exported folder ``<out_dir>/damsm``."""
    dist = init_distributed(cfg.run.device)
    try:
        return _train(cfg, resume, dist)
    finally:
        shutdown()


def _train(cfg: DAMSMTrainConfig, resume: bool, dist: DistInfo) -> Path:
    run = cfg.run
    out = Path(run.out_dir)
    set_threads(run.threads)
    if run.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(run.seed + dist.rank)
    if dist.is_main:
        ckpt.check_writable(out)
    folder = out / "checkpoints-damsm"
    if not resume:
        ckpt.check_fresh(folder)
    data = build_data(cfg.data, (cfg.image_encoder.image_size,), cfg.text_encoder.max_words, seed=run.seed)
    vocab = data.vocab
    run = dataclasses.replace(run, precision=resolve_precision(run.precision, dist.device))  # recorded as used
    cfg = dataclasses.replace(cfg, text_encoder=dataclasses.replace(cfg.text_encoder, vocab_size=len(vocab)), run=run)
    if dist.is_main:
        write_resolved_config(out, {"damsm": to_dict(cfg), "version": __version__}, "damsm_config.yaml")

    device = dist.device
    text_encoder = TextEncoder(cfg.text_encoder)
    text_encoder.reset_parameters_original()
    image_encoder = build_image_encoder(cfg.image_encoder)
    if hasattr(image_encoder, "reset_parameters_original"):
        image_encoder.reset_parameters_original()
    if cfg.imagenet_weights:
        from ..untrusted import load_state_dict_file

        load_inception_imagenet_weights(image_encoder, load_state_dict_file(cfg.imagenet_weights))  # type: ignore[arg-type]
    text_encoder.to(device).train()
    image_encoder.to(device).train()
    params = [p for m in (text_encoder, image_encoder) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    stream = BatchStream(data, _collate(), run.batch_size, run.seed, dist, cfg.data.num_workers)

    start = 0
    if resume:
        found = ckpt.latest_checkpoint(folder)
        if found is None:
            raise ckpt.CheckpointError(f"--resume: no checkpoint in {folder}")
        path, state = found
        try:
            words = state.get("vocab")
            if words is not None and list(words) != vocab.words:
                raise ValueError(f"it was trained with another vocabulary ({len(words)} words) than the data set's "
                                 f"({len(vocab)} words)")
            text_encoder.load_state_dict(state["models"]["text_encoder"])
            image_encoder.load_state_dict(state["models"]["image_encoder"])
            optimizer.load_state_dict(state["optimizers"]["encoders"])
            ckpt.set_rng_state(state["rng"])
            start = int(state["step"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ckpt.CheckpointError(f"{path} does not fit this run: {reason}") from None
        log.info("resumed from %s at step %d", path, start)

    te: Any = text_encoder
    ie: Any = image_encoder
    if dist.enabled:
        te = DistributedDataParallel(text_encoder)
        ie = DistributedDataParallel(image_encoder) if any(p.requires_grad for p in image_encoder.parameters()) \
            else image_encoder

    def state_dict(step: int) -> dict[str, Any]:
        return {"step": step, "version": __version__, "config": to_dict(cfg),
                "models": {"text_encoder": text_encoder.state_dict(), "image_encoder": image_encoder.state_dict()},
                "optimizers": {"encoders": optimizer.state_dict()}, "rng": ckpt.rng_state(), "vocab": vocab.words}

    if dist.is_main:
        need = ckpt.state_bytes(state_dict(start)) + ckpt.pending_optimizer_bytes([optimizer])
        ckpt.check_space(folder, need, run.keep_checkpoints)

    sink = MetricsSink(out, dist.is_main, run.max_steps, start, "damsm")
    deadline = time.time() + run.time_limit_minutes * 60 if run.time_limit_minutes > 0 else None
    step = start
    with StopFlag() as stop:
        for batch in stream.iterate(start):
            if step >= run.max_steps or stop.requested or (deadline is not None and time.time() > deadline):
                break
            t0 = time.time()
            epoch, index = stream.position(step)
            if index == 0 and step > 0:  # the original decays the learning rate once per epoch
                for group in optimizer.param_groups:
                    group["lr"] = max(group["lr"] * cfg.lr_decay_per_epoch, cfg.optim.lr / 10)
            with autocast(run.precision, device):
                losses = damsm_step_losses(te, ie, batch, cfg, device)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()  # type: ignore[union-attr]
            torch.nn.utils.clip_grad_norm_(text_encoder.parameters(), cfg.rnn_grad_clip)
            optimizer.step()
            step += 1
            sink.advance()
            if dist.is_main and (step % run.log_every == 0 or step == run.max_steps):
                values = {k: float(v.detach()) for k, v in losses.items()}
                sink.log(step, {**values, "loss": sum(values.values()), "lr": optimizer.param_groups[0]["lr"],
                                "epoch": epoch, "step_s": time.time() - t0})
            if dist.is_main and step % run.checkpoint_every == 0:
                ckpt.save_checkpoint(folder, step, state_dict(step), run.keep_checkpoints)
    sink.close()
    export = out / "damsm"
    if dist.is_main:
        ckpt.save_checkpoint(folder, step, state_dict(step), run.keep_checkpoints)
        meta = {"steps": step, "data": cfg.data.kind, "version": __version__}
        save_damsm(DAMSMEncoders(text_encoder.cpu().eval(), image_encoder.cpu().eval(), vocab, meta), export)
        log.info("exported DAMSM encoders to %s", export)
    return export


def _collate() -> Any:
    from ..data import collate

    return collate
