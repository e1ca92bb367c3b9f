"""A few minutes on a CUDA GPU: does everything run there, and how fast?

    python benchmarks/gpu_check.py                      # on the GPU (about 3-5 minutes)
    python benchmarks/gpu_check.py --device cpu --tiny  # the same code paths, tiny sizes (a rehearsal)

Checks, each in its own section (a failure is recorded and the others go on):

1. generation, bird configuration (random weights), fp32 and bf16: parity against the exact fp32
   path (PSNR) and images/s at batch 1, 8 and 64;
2. ``torch.compile`` of the generator: compile time and images/s at batch 8 (whether it pays);
3. training: seconds per step and peak memory of the shapes preset (as shipped) and of the bird
   configuration at batch 4, fp32 and bf16;
4. evaluation: the bundled shapes model through ``attngan.metrics`` (a few hundred captions).

Writes ``gpu_check.json`` and prints a Markdown table (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def log(message: str) -> None:
    print(message, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], Any], device: torch.device, reps: int) -> float:
    """Best wall time of ``call`` over ``reps`` runs after one warm-up."""
    call()
    synchronize(device)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@contextlib.contextmanager
def section(res: dict[str, Any], name: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # keep what was measured; say what failed
        res.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
        log(f"ERROR in {name}: {res['errors'][name]}")


# --------------------------------------------------------------------------- sections
def model_bundle(tiny: bool) -> Any:
    import bench_generate as gen

    if not tiny:
        return gen.bird_bundle()
    from attngan.config import GeneratorConfig, ModelConfig, TextEncoderConfig
    from attngan.hub import build_bundle
    from attngan.text import PAD_TOKEN, Vocabulary

    words = sorted({w for c in gen.CAPTIONS for w in c.split()})
    vocab = Vocabulary([PAD_TOKEN, *words])
    config = ModelConfig(TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=16, hidden_dim=16, max_words=18),
                         GeneratorConfig(text_dim=16, condition_dim=8, noise_dim=8, channels=8, num_residual=1,
                                         num_stages=3, first_stage_size=16), name="tiny")
    bundle = build_bundle(config, vocab)
    for module in bundle.modules().values():
        module.eval()
    return bundle


def generation(bundle: Any, device: torch.device, batches: list[int], reps: int) -> dict[str, Any]:
    import bench_generate as gen

    from attngan.inference.pipeline import AttnGANPipeline

    exact = AttnGANPipeline(bundle, device=device, exact=True)
    out: dict[str, Any] = {}
    reference = exact(gen.captions_for(8), seed=0).images[-1]
    for precision in ("fp32", "bf16"):
        pipe = AttnGANPipeline(bundle, device=device, precision=precision)
        images = pipe(gen.captions_for(8), seed=0).images[-1]
        row: dict[str, Any] = {"psnr_vs_exact_db": gen.psnr(images, reference)}
        for b in batches:
            captions = gen.captions_for(b)
            seconds = timed(lambda pipe=pipe, captions=captions, b=b: pipe(captions, seed=0, batch_size=b), device, reps)
            row[f"images_per_s_batch_{b}"] = b / seconds
        out[precision] = row
        log(f"generation {precision}: {json.dumps(row)}")
    return out


def compiled_generation(bundle: Any, device: torch.device, batch: int, reps: int) -> dict[str, Any]:
    import bench_generate as gen

    from attngan.inference.pipeline import AttnGANPipeline

    captions = gen.captions_for(batch)
    plain = AttnGANPipeline(bundle, device=device, exact=True)
    eager_s = timed(lambda: plain(captions, seed=0, batch_size=batch), device, reps)
    compiled = dataclasses.replace(bundle, generator=torch.compile(bundle.generator))
    pipe = AttnGANPipeline(compiled, device=device, exact=True)
    t0 = time.perf_counter()
    pipe(captions, seed=0, batch_size=batch)
    synchronize(device)
    first_s = time.perf_counter() - t0
    compiled_s = timed(lambda: pipe(captions, seed=0, batch_size=batch), device, reps)
    result = {"batch": batch, "eager_images_per_s": batch / eager_s, "compiled_images_per_s": batch / compiled_s,
              "first_call_s": first_s,
              "calls_to_pay_back": (first_s - compiled_s) / max(eager_s - compiled_s, 1e-9)
              if eager_s > compiled_s else None}
    log(f"torch.compile: {json.dumps(result)}")
    return result


def training(device: torch.device, tiny: bool, steps: int) -> list[dict[str, Any]]:
    """Seconds per GAN step and peak memory: the shapes preset and the bird configuration (batch 4)."""
    import bench_train as train

    rows = []
    for case in (["shapes"] if tiny else ["shapes", "birds"]):
        for precision in ("fp32", "bf16"):
            reset_peak(device)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = train.make_trainer(case, Path(tmp), precision, device=str(device), tiny=tiny)
                batch = train.fixed_batch(trainer)
                seconds = timed(lambda trainer=trainer, batch=batch: trainer.train_step(batch), device, steps)
            row = {"case": case, "precision": precision, "batch": batch["tokens"].shape[0], "s_per_step": seconds,
                   "peak_gib": peak_memory_gib(device)}
            rows.append(row)
            log(f"training: {json.dumps(row)}")
    return rows


def evaluation(device: torch.device, samples: int) -> dict[str, Any]:
    from attngan.inference.pipeline import AttnGANPipeline
    from attngan.metrics.run import evaluate_shapes

    t0 = time.perf_counter()
    pipe = AttnGANPipeline.from_pretrained(device=device)
    summary = evaluate_shapes(pipe, num_samples=samples, seed=0)
    result = {"num_samples": samples, "seconds": time.perf_counter() - t0, "precision": pipe.precision,
              **{k: v for k, v in summary.items() if isinstance(v, float)}}
    log(f"evaluation: {json.dumps(result)}")
    return result


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a rehearsal) [cuda]")
    parser.add_argument("--tiny", action="store_true", help="tiny models and counts (a rehearsal of the code paths)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu", help="output folder")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: generate,compile,train,evaluate")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log("no CUDA device: run with --device cpu --tiny for a rehearsal")
        return 2
    skip = set(filter(None, args.skip.split(",")))
    tiny = args.tiny
    res: dict[str, Any] = {"command": " ".join(["benchmarks/gpu_check.py", *(argv or sys.argv[1:])]),
                           "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
                           "torch": torch.__version__, "tiny": tiny}
    log(f"device: {res['device']}, torch {res['torch']}")
    started = time.perf_counter()
    bundle = model_bundle(tiny)
    if "generate" not in skip:
        with section(res, "generate"):
            res["generate"] = generation(bundle, device, [1, 8] if tiny else [1, 8, 64], 1 if tiny else 5)
    if "compile" not in skip:
        with section(res, "compile"):
            res["compile"] = compiled_generation(bundle, device, 2 if tiny else 8, 1 if tiny else 5)
    if "train" not in skip:
        with section(res, "train"):
            res["train"] = training(device, tiny, 1 if tiny else 5)
    if "evaluate" not in skip:
        with section(res, "evaluate"):
            res["evaluate"] = evaluation(device, 20 if tiny else 500)
    res["elapsed_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(res, indent=1, default=str))
    log(json.dumps(res, indent=1, default=str))
    return 1 if res.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
