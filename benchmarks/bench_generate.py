"""Generation benchmarks: the bird-configuration model on every inference path.

Paths: ``exact`` (the reference modules, fp32, the original's computation), ``exact-bf16``
(reference modules under bf16 autocast: a comparison only, the pipeline's exact path is fp32), ``fast`` (the fused generator, fp32: the default
where bf16 is not native), ``fast-bf16`` (fused, bf16 weights), ``onnx`` (ONNX Runtime, fp32)
and ``compile`` (``torch.compile`` of the reference generator).
"""

from __future__ import annotations

import contextlib
import math
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from attngan.config import bird_config
from attngan.hub import ModelBundle, build_bundle, save_pretrained
from attngan.inference import fast
from attngan.inference.pipeline import AttnGANPipeline
from attngan.models.layers import init_weights_original
from attngan.text import PAD_TOKEN, Vocabulary

BIRD_WORDS = ("this bird has a red crown and white belly with black wings small beak long tail feathers "
              "yellow breast brown back grey throat short pointed orange bill blue head green legs the is "
              "of that bright dark light striped spotted medium sized").split()
CAPTIONS = [  # 18 known words each, as the bird configuration's longest captions
    "this bird has a red crown and white belly with black wings and a small pointed beak and long tail",
    "a small bird with yellow breast brown back grey throat and short orange bill with dark striped wings",
    "this is a medium sized bird with a blue head green legs and bright spotted feathers and a long tail",
]


def bird_bundle(seed: int = 0, vocab_size: int = 5450) -> ModelBundle:
    """The published bird configuration with random weights and trained-looking BatchNorm statistics."""
    torch.manual_seed(seed)
    words = [*dict.fromkeys(BIRD_WORDS)]
    vocab = Vocabulary([PAD_TOKEN, *words, *[f"word{i}" for i in range(vocab_size - len(words) - 1)]])
    bundle = build_bundle(bird_config(len(vocab)), vocab, {"note": "random weights for benchmarks"})
    bundle.generator.apply(init_weights_original)
    g = torch.Generator().manual_seed(seed)
    for m in bundle.generator.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    for m in bundle.modules().values():
        m.eval()
    return bundle


def save_bird_model(folder: Path) -> Path:
    return save_pretrained(bird_bundle(), folder / "bird-random")


ABLATIONS = ("fast-no-subpixel", "fast-unfused", "fast-unpacked")


def make_pipeline(bundle: ModelBundle, path: str, onnx_dir: Path | None = None) -> Any:
    """A callable ``(captions, seed=, num_stages=, batch_size=) -> PipelineOutput`` for ``path``.

    Besides the paths of the module docstring, the fast path with one change left out:
    ``fast-no-subpixel`` (upsample then 3x3 conv), ``fast-unfused`` (no oneDNN post-ops:
    conv, then separate sigmoid / mul / add / tanh), ``fast-unpacked`` (weights not
    pre-reordered for oneDNN).
    """
    exact = path.startswith("exact") or path == "compile"
    precision = "bf16" if path == "fast-bf16" else "fp32"
    pipe = AttnGANPipeline(bundle, precision=precision, exact=exact)
    if path == "exact-bf16":
        return _Patched(pipe, path)
    if path == "onnx":
        pipe.use_backend("onnx", onnx_dir)
    if path == "compile":
        bundle_c = ModelBundle(bundle.config, bundle.vocab, bundle.text_encoder,
                               torch.compile(bundle.generator), bundle.image_encoder, bundle.metadata)  # type: ignore[arg-type]
        pipe = AttnGANPipeline(bundle_c, precision="fp32", exact=True)
    if path == "fast-no-subpixel":
        pipe.backend._generator = fast.FastGenerator(bundle.generator, subpixel=False)  # type: ignore[attr-defined]
    if path in ("fast-unfused", "fast-unpacked"):
        return _Patched(pipe, path)
    return pipe


class _Patched:
    """Calls a fast pipeline with one of its oneDNN features switched off for the call, or the exact
    pipeline under bf16 autocast (``exact-bf16``)."""

    def __init__(self, pipe: AttnGANPipeline, path: str) -> None:
        self.pipe, self.path = pipe, path

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.path == "exact-bf16":
            with torch.autocast(self.pipe.device.type, dtype=torch.bfloat16):
                return self.pipe(*args, **kwargs)
        saved_ok, saved_pack = fast._mkldnn_ok, fast.FusedConv.packed_weight
        if self.path == "fast-unfused":
            fast._mkldnn_ok = lambda x: False
        else:
            fast.FusedConv.packed_weight = lambda conv, x: conv.weight  # type: ignore[method-assign]
        try:
            return self.pipe(*args, **kwargs)
        finally:
            fast._mkldnn_ok, fast.FusedConv.packed_weight = saved_ok, saved_pack  # type: ignore[method-assign]


def captions_for(batch: int) -> list[str]:
    return [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]


def time_calls(call: Callable[[], Any], min_reps: int, min_seconds: float, warmup: int = 1) -> dict[str, float]:
    """Median / min wall time of ``call`` after ``warmup`` calls."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if len(times) >= 50:
            break
    return {"median_s": statistics.median(times), "min_s": min(times), "reps": len(times)}


@torch.inference_mode()
def generation_flops(bundle: ModelBundle, executed_by: str, num_stages: int | None = None) -> float:
    """FLOPs of one image (batch 1) as counted by ``FlopCounterMode``: the reference generator
    (``exact``) or what the fused generator executes (``fast``, counted on its plain-op path)."""
    from torch.utils.flop_counter import FlopCounterMode

    pipe = make_pipeline(bundle, "exact" if executed_by == "exact" else "fast")
    saved = fast._mkldnn_ok
    fast._mkldnn_ok = lambda x: False  # count the same convolutions as plain aten ops
    try:
        with FlopCounterMode(display=False) as counter:
            pipe(CAPTIONS[0], seed=0, num_stages=num_stages)
    finally:
        fast._mkldnn_ok = saved
    return float(counter.get_total_flops())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of images in [-1, 1]."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


@torch.inference_mode()
def parity(bundle: ModelBundle, paths: list[str], batch: int = 8, onnx_dir: Path | None = None) -> dict[str, Any]:
    """PSNR of each path's last-stage images against the exact path, same seeds."""
    captions = captions_for(batch)
    ref = make_pipeline(bundle, "exact")(captions, seed=123)
    out: dict[str, Any] = {}
    for path in paths:
        if path == "exact":
            continue
        got = make_pipeline(bundle, path, onnx_dir)(captions, seed=123)
        out[path] = {"psnr_db": [round(psnr(a, b), 2) for a, b in zip(got.images, ref.images, strict=True)],
                     "max_abs": float((got.images[-1] - ref.images[-1]).abs().max())}
    return out


def sweep(bundle: ModelBundle, paths: list[str], batches: list[int], stages: list[int], reps: int,
          seconds: float, onnx_dir: Path | None, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Time per call for every (path, batch, stages); one row per measurement.

    The paths are timed in alternation (one call of each per round, ``reps`` rounds or
    ``seconds`` at least), so a burst of load from elsewhere hits them alike; ``s_per_call``
    is the best call (the least disturbed), ``s_per_call_median`` the median.
    """
    pipes, setup = {}, {}
    for path in paths:
        t0 = time.perf_counter()
        pipes[path] = make_pipeline(bundle, path, onnx_dir)
        setup[path] = time.perf_counter() - t0
    rows = []
    for n_stages in stages:
        for batch in batches:
            captions = captions_for(batch)
            times: dict[str, list[float]] = {path: [] for path in paths}
            first: dict[str, float] = {}
            started = time.perf_counter()
            round_ = 0
            while True:
                for path in paths:
                    t0 = time.perf_counter()
                    pipes[path](captions, seed=0, num_stages=n_stages, batch_size=batch)
                    elapsed = time.perf_counter() - t0
                    if round_ == 0:
                        first[path] = elapsed
                    else:
                        times[path].append(elapsed)
                round_ += 1
                if round_ > 50 or (round_ > reps and time.perf_counter() - started >= seconds):
                    break
            for path in paths:
                best, median = min(times[path]), statistics.median(times[path])
                row = {"path": path, "batch": batch, "stages": n_stages,
                       "resolution": bundle.config.generator.image_sizes[n_stages - 1],
                       "s_per_call": best, "s_per_call_median": median, "reps": len(times[path]),
                       "s_per_image": best / batch, "images_per_s": batch / best,
                       "first_call_s": first[path], "setup_s": setup[path]}
                rows.append(row)
                log(f"  {path:10s} stages {n_stages} batch {batch:2d}: best {best:.4f} s/call (median {median:.4f}), "
                    f"{row['images_per_s']:.2f} images/s")
    return rows


def peak_rss_gib() -> float:
    """This process's peak resident memory in GiB: Linux's VmHWM, which starts afresh with the
    process image (``ru_maxrss`` does not: it keeps the parent's peak across fork and exec, so a
    child of a large benchmark process would report the parent's memory)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # KiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def child_generate_memory(path: str, batch: int, model_dir: str) -> dict[str, Any]:
    """(Run in a fresh process.) Peak memory of loading ``model_dir`` and generating one batch on ``path``."""
    from attngan.hub import load_pretrained

    pipe = make_pipeline(load_pretrained(model_dir), path)
    loaded = peak_rss_gib()
    pipe(captions_for(batch), seed=0, batch_size=batch)
    pipe(captions_for(batch), seed=1, batch_size=batch)
    return {"path": path, "batch": batch, "peak_rss_gib": peak_rss_gib(), "model_loaded_rss_gib": loaded}
