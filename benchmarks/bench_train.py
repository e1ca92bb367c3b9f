"""Training benchmarks: one GAN step and one DAMSM step of the bird configuration (batch 4,
Inception-v3 DAMSM at 299 px) and of the shapes and anime-faces presets (as shipped), each with
the faithful trainer (``SpeedOptions.reference()``, the original's computation module for
module) and with the default one, fp32 and bf16; plus data-loader throughput. Each training
measurement runs in a fresh process (``run.py --child ...``) so its peak memory is its own.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_generate import peak_rss_gib

from attngan.config import DiscriminatorConfig, bird_config
from attngan.data import DataSpec, build_from_options, collate
from attngan.hub import DAMSMEncoders, save_damsm
from attngan.models.image_encoder import build_image_encoder
from attngan.models.text_encoder import TextEncoder
from attngan.training.compiled import cache_counters
from attngan.training.damsm import DAMSMTrainer
from attngan.training.distributed import DistInfo
from attngan.training.gan import GANTrainer
from attngan.training.options import (
    DAMSMTrainConfig,
    GANTrainConfig,
    SpeedOptions,
    resolve_config,
)

BIRD_BATCH = 4
ROOT = Path(__file__).resolve().parents[1]
ANIME = ROOT.parent / "shared" / "data" / "anime_faces"
CASES = ("birds", "shapes", "anime_faces")
# What each preset ran before this trainer (the "before" column): the faithful trainer in the
# precision the preset then asked for (shapes and birds fp32; anime faces auto).
BEFORE_PRECISION = {"birds": "fp32", "shapes": "fp32", "anime_faces": "auto"}


def own_speed(case: str) -> SpeedOptions:
    """The speed options a case ships with: its preset's (``birds``: the birds preset's)."""
    return resolve_config("gan", case).run.speed


def speed_variant(name: str, own: SpeedOptions) -> SpeedOptions:
    """The speed options of variant ``name`` for a case whose own options are ``own`` (its preset's
    as it ships them, :func:`own_speed`): ``reference`` (every
    option off, the original's computation), ``default`` (``own``), ``no-<option>`` /
    ``with-<option>`` (``own`` with one option changed), several joined by ``+``
    (``with-compile+no-subpixel``)."""
    if name == "reference":
        return SpeedOptions.reference()
    if name == "default":
        return own
    changes: dict[str, bool] = {}
    for part in name.split("+"):
        on = part.startswith("with-")
        if not on and not part.startswith("no-"):
            raise ValueError(f"unknown speed variant {name!r}")
        option = part.split("-", 1)[1].replace("-", "_")
        if option not in {f.name for f in dataclasses.fields(SpeedOptions)}:
            raise ValueError(f"unknown speed option {option!r} in variant {name!r}")
        changes[option] = on
    return dataclasses.replace(own, **changes)


def _tags_folder(folder: Path, count: int = 256) -> Path:
    """Random 64x64 faces with tags, when the real anime faces are absent (timing does not care)."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    hair, eyes = ("blonde", "red", "black", "blue"), ("blue", "green", "red", "purple")
    lines = []
    for k in range(count):
        pixels = (torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / "images" / f"{k}.jpg")
        lines.append(f"{k},{hair[k % 4]} hair {eyes[(k // 4) % 4]} eyes")
    (folder / "tags.csv").write_text("\n".join(lines) + "\n")
    return folder


def _overrides(case: str, folder: Path, tiny: bool) -> list[str]:
    if case == "anime_faces":
        root = ANIME if ANIME.exists() and not tiny else _tags_folder(folder / "tags")
        return [f"data.root={root}", f"data.cache_dir={folder / 'cache'}"]
    return ["data.extra={size: 256}"] if case == "shapes" else []


def _random_damsm(folder: Path, damsm: DAMSMTrainConfig, data: Any) -> Path:
    """Encoders of the preset's sizes with random weights, for the preset's vocabulary."""
    torch.manual_seed(0)
    text = TextEncoder(dataclasses.replace(damsm.text_encoder, vocab_size=len(data.vocab))).eval()
    image = build_image_encoder(damsm.image_encoder).eval()
    return save_damsm(DAMSMEncoders(text, image, data.vocab, {"note": "random weights for benchmarks"}),
                      folder / "damsm")


def damsm_config(case: str, folder: Path, precision: str, variant: str = "default", device: str = "cpu",
                 tiny: bool = False) -> DAMSMTrainConfig:
    if case == "birds":
        bird = bird_config()
        # the synthetic images are drawn at 256 px (the shapes renderer's largest): the Inception-v3
        # encoder resizes any input to 299 px, so its work is the bird configuration's all the same
        encoder = dataclasses.replace(bird.image_encoder, image_size=256)
        cfg = DAMSMTrainConfig(text_encoder=bird.text_encoder, image_encoder=encoder,  # type: ignore[arg-type]
                               data=DataSpec(kind="shapes", extra={"size": 256}))
        run = dataclasses.replace(cfg.run, batch_size=BIRD_BATCH)
    else:
        cfg = resolve_config("damsm", case, _overrides(case, folder, tiny))
        run = cfg.run
    run = dataclasses.replace(run, out_dir=str(folder / "damsm-run"), precision=precision,
                              speed=speed_variant(variant, run.speed),
                              device=device, log_every=10**6, checkpoint_every=10**6, time_limit_minutes=0.0)
    return dataclasses.replace(cfg, run=run)


def make_trainer(case: str, folder: Path, precision: str, variant: str = "default", device: str = "cpu",
                 tiny: bool = False) -> GANTrainer:
    """A GAN trainer for ``case`` (``birds``: the published configuration at batch 4; a preset name:
    the preset as shipped) with the speed ``variant`` (:func:`speed_variant`) and random DAMSM
    encoders, writing under ``folder``."""
    damsm = damsm_config(case, folder, "fp32", "default", device, tiny)
    if case == "birds":
        gen = bird_config().generator
        data = build_from_options(damsm.data, gen.image_sizes[-1:], 18)
        cfg = GANTrainConfig(generator=gen, discriminator=DiscriminatorConfig(channels=64),
                             damsm=str(_random_damsm(folder, damsm, data)), data=damsm.data, name="bench-birds")
        run = dataclasses.replace(cfg.run, batch_size=BIRD_BATCH, speed=own_speed("birds"))
    else:
        data = build_from_options(damsm.data, (damsm.image_encoder.image_size,), damsm.text_encoder.max_words)
        cfg = resolve_config("gan", case, _overrides(case, folder, tiny) + [f"damsm={_random_damsm(folder, damsm, data)}"])
        run = cfg.run
    if tiny:
        cfg = dataclasses.replace(cfg, generator=dataclasses.replace(cfg.generator, channels=4, num_stages=2))
        run = dataclasses.replace(run, batch_size=4)
    run = dataclasses.replace(run, out_dir=str(folder / "run"), precision=precision,
                              speed=speed_variant(variant, run.speed), device=device,
                              sample_every=0, log_every=10**6, checkpoint_every=10**6, time_limit_minutes=0.0)
    return GANTrainer(dataclasses.replace(cfg, run=run), DistInfo(device=torch.device(device)))


def fixed_batch(trainer: Any) -> dict[str, Any]:
    """The first global batch of the trainer's data."""
    return collate([trainer.data[i] for i in range(trainer.cfg.run.batch_size)])


def child_step(kind: str, case: str, variant: str, precision: str, steps: int, threads: int) -> dict[str, Any]:
    """(Fresh process.) Seconds per step of a GAN (``kind`` ``gan``) or DAMSM (``damsm``) trainer
    for ``case`` with the speed ``variant`` and ``precision``; FLOPs of a GAN step; peak memory."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "gan":
            trainer: Any = make_trainer(case, Path(tmp), precision, variant)
        else:
            trainer = DAMSMTrainer(damsm_config(case, Path(tmp), precision, variant), DistInfo())
        batch = fixed_batch(trainer)
        t0 = time.perf_counter()
        trainer.train_step(batch)  # warm-up (allocations, oneDNN primitive creation)
        first = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            trainer.train_step(batch)
            times.append(time.perf_counter() - t0)
        flops = None
        if kind == "gan" and variant == "reference":
            with FlopCounterMode(display=False) as counter:
                trainer.train_step(batch)
            flops = float(counter.get_total_flops())
    return {"kind": kind, "case": case, "variant": variant, "precision": trainer.cfg.run.precision,
            "batch": trainer.cfg.run.batch_size, "s_per_step": statistics.median(times), "s_min": min(times),
            "steps": steps, "first_step_s": first, "flops": flops, "peak_rss_gib": peak_rss_gib(),
            "compiled": trainer.cfg.run.speed.compile, "kernel_cache": cache_counters()}


def loader_throughput(kind: str, root: str | None, workers: int, batches: int, threads: int) -> dict[str, Any]:
    """Images/s that a ``DataLoader`` delivers (three stage sizes, 64/128/256, training mode)."""
    from torch.utils.data import DataLoader

    torch.set_num_threads(threads)
    options = DataSpec(kind=kind, root=root, missing="skip") if kind == "cub" else DataSpec(
        kind="shapes", extra={"size": 2000})
    data = build_from_options(options, (64, 128, 256), 18)
    loader = DataLoader(data, batch_size=BIRD_BATCH, shuffle=True, num_workers=workers, collate_fn=collate,
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
