"""Training benchmarks: one AttnGAN iteration (bird configuration, batch 4), one DAMSM
pretraining step, and data-loader throughput. Each training measurement runs in a fresh
process (``run.py --child ...``) so its peak memory is its own."""

from __future__ import annotations

import dataclasses
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from attngan.config import DiscriminatorConfig, bird_config
from attngan.data import collate
from attngan.hub import DAMSMEncoders, save_damsm
from attngan.models.image_encoder import build_image_encoder
from attngan.models.text_encoder import TextEncoder
from attngan.training.damsm import build_data
from attngan.training.distributed import DistInfo
from attngan.training.options import DAMSMTrainConfig, DataOptions, GANTrainConfig, RunOptions

BATCH = 4


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _shapes_options(size: int = 64) -> DataOptions:
    return DataOptions(kind="shapes", extra={"size": size})


def make_damsm_folder(folder: Path, image_sizes: tuple[int, ...]) -> Path:
    """Random bird-configuration DAMSM encoders (Inception-v3 image encoder) for the shapes vocabulary."""
    data = build_data(_shapes_options(), image_sizes, 18)
    cfg = bird_config(len(data.vocab))
    torch.manual_seed(0)
    text = TextEncoder(cfg.text_encoder).eval()
    image = build_image_encoder(cfg.image_encoder).eval()
    return save_damsm(DAMSMEncoders(text, image, data.vocab, {"note": "random weights for benchmarks"}),
                      folder / "damsm")


def gan_config(out: Path, damsm: Path, threads: int) -> GANTrainConfig:
    gen = bird_config().generator
    return GANTrainConfig(generator=gen, discriminator=DiscriminatorConfig(channels=64), damsm=str(damsm),
                          data=_shapes_options(), name="bench-birds",
                          run=RunOptions(out_dir=str(out), batch_size=BATCH, device="cpu", threads=threads,
                                         sample_every=0, log_every=1000, checkpoint_every=1000))


def _batch(trainer: Any) -> dict[str, Any]:
    return collate([trainer.data[i] for i in range(BATCH)])


def child_train_step(variant: str, steps: int, threads: int) -> dict[str, Any]:
    """(Fresh process.) Seconds per ``train_step`` of ``GANTrainer`` (``reference``) or
    ``FastGANTrainer`` (``fast``; ``fast-no-subpixel`` / ``fast-no-fold`` / ``fast-keep-grads``
    leave one change out), its FLOPs and the process's peak memory."""
    from torch.utils.flop_counter import FlopCounterMode

    from attngan.training.fast_train import FastGANTrainer
    from attngan.training.gan import GANTrainer

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        damsm = make_damsm_folder(Path(tmp), bird_config().generator.image_sizes[-1:])
        cfg = gan_config(Path(tmp) / "run", damsm, threads)
        trainer = GANTrainer(cfg, DistInfo()) if variant == "reference" else FastGANTrainer(
            cfg, DistInfo(), subpixel=variant != "fast-no-subpixel", fold_encoder=variant != "fast-no-fold",
            release_gradients=variant != "fast-keep-grads")
        batch = _batch(trainer)
        t0 = time.perf_counter()
        trainer.train_step(batch)  # warm-up (allocations, oneDNN primitive creation)
        first = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            trainer.train_step(batch)
            times.append(time.perf_counter() - t0)
        with FlopCounterMode(display=False) as counter:
            trainer.train_step(batch)
    return {"variant": variant, "batch": BATCH, "s_per_step": statistics.median(times), "s_min": min(times),
            "steps": steps, "first_step_s": first, "flops": float(counter.get_total_flops()),
            "peak_rss_gib": peak_rss_gib()}


def child_damsm_step(variant: str, steps: int, threads: int) -> dict[str, Any]:
    """(Fresh process.) One DAMSM pretraining step (bird configuration, Inception-v3 at 299, batch 4):
    losses, backward, gradient clipping, Adam. ``channels_last`` runs the image encoder channels-last."""
    from attngan.training.damsm import damsm_step_losses

    torch.set_num_threads(threads)
    data = build_data(_shapes_options(), (256,), 18)  # the encoder resizes to 299 itself
    cfg = DAMSMTrainConfig(text_encoder=dataclasses.replace(bird_config().text_encoder, vocab_size=len(data.vocab)),
                           image_encoder=bird_config().image_encoder, data=_shapes_options(),
                           run=RunOptions(batch_size=BATCH, device="cpu"))
    torch.manual_seed(0)
    text, image = TextEncoder(cfg.text_encoder).train(), build_image_encoder(cfg.image_encoder).train()
    if variant == "channels_last":
        image = image.to(memory_format=torch.channels_last)
    params = [p for m in (text, image) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    batch = collate([data[i] for i in range(BATCH)])
    if variant == "channels_last":
        batch["images"] = [im.contiguous(memory_format=torch.channels_last) for im in batch["images"]]

    def step() -> None:
        losses = damsm_step_losses(text, image, batch, cfg, torch.device("cpu"))
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[union-attr]
        torch.nn.utils.clip_grad_norm_(text.parameters(), cfg.rnn_grad_clip)
        opt.step()

    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"variant": variant, "batch": BATCH, "s_per_step": statistics.median(times), "s_min": min(times),
            "steps": steps, "peak_rss_gib": peak_rss_gib()}


def loader_throughput(kind: str, root: str | None, workers: int, batches: int, threads: int) -> dict[str, Any]:
    """Images/s that a ``DataLoader`` delivers (three stage sizes, 64/128/256, training mode)."""
    from torch.utils.data import DataLoader

    torch.set_num_threads(threads)
    options = DataOptions(kind=kind, root=root, missing="skip") if kind == "cub" else _shapes_options(2000)
    data = build_data(options, (64, 128, 256), 18)
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers, collate_fn=collate,
                        drop_last=True, persistent_workers=False, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)  # worker start-up and the first decode are not throughput
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += batch["images"][0].shape[0]
    seconds = time.perf_counter() - t0
    return {"data": kind, "workers": workers, "images": n, "seconds": seconds, "images_per_s": n / seconds,
            "dataset_items": len(data)}
