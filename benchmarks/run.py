"""Performance benchmark of attngan on this machine: every inference path side by side, the
training and DAMSM steps, the data loaders, cold start, the server, and the machine's own
GEMM limits. Writes ``results.json``, ``results.md`` and PNG plots to ``--out``.

    .venv/bin/python benchmarks/run.py            # full run (about 1-2 hours on 2 cores, compiles included)
    .venv/bin/python benchmarks/run.py --quick    # under 2 minutes: the headline numbers only
    .venv/bin/python benchmarks/run.py --only profile,interleaved,train,damsm   # the training comparison
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_generate as gen  # noqa: E402
import bench_profile as prof  # noqa: E402
import bench_report as report  # noqa: E402
import bench_train as train  # noqa: E402

from attngan.training.options import SpeedOptions  # noqa: E402

CUB = ROOT.parent / "shared" / "data" / "cub_birds_001-005"
BUNDLED = ROOT / "src" / "attngan" / "assets" / "shapes-64"
SECTIONS = ("machine", "flops", "generate", "ablation", "parity", "memory", "compile", "profile", "interleaved", "train",
            "damsm", "loader", "cold", "server", "evaluate")
PRESETS = ("shapes", "anime_faces")


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"^model name\s*:\s*(.*)$", text, re.M).group(1).strip()  # type: ignore[union-attr]
        flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split())  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass
    from attngan.precision import native_bf16

    return {"cpu": cpu, "cores": os.cpu_count(), "threads_used": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa": sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma", "avx_vnni"))),
            "native_bf16": native_bf16("cpu"),
            "load_average": os.getloadavg(), "training_job_running": training_running()}


def training_running() -> bool:
    found = subprocess.run(["pgrep", "-f", "attngan train"], capture_output=True, text=True)
    return bool(found.stdout.strip())


def gemm_gflops(dtype: torch.dtype, n: int, reps: int) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# --------------------------------------------------------------------------- children
def child(name: str, *args: Any, timeout: float = 900, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``name(*args)`` of a benchmark module in a fresh process (``env``: added to the environment);
    its JSON result."""
    command = [sys.executable, str(Path(__file__)), "--child", json.dumps([name, list(args)])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(spec: str) -> None:
    name, args = json.loads(spec)
    module, func = name.split(".")
    result = getattr({"gen": gen, "train": train, "prof": prof}[module], func)(*args)
    print(json.dumps(result))


# --------------------------------------------------------------------------- training
def _best_of(runs: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per (case, variant, precision): the run with the fastest step (rounds ran in alternation, so
    a burst of load elsewhere hits every variant alike), or its error."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for run in runs:
        k = tuple(run.get(name) for name in key)
        current = best.get(k)
        if current is None or "error" in current or ("error" not in run and run["s_min"] < current["s_min"]):
            best[k] = run
    return list(best.values())


def _step_runs(kind: str, plan: list[tuple[str, str, str]], steps: int, rounds: int, threads: int) -> list[dict[str, Any]]:
    runs = []
    for _ in range(rounds):
        for case, variant, precision in plan:
            result = child("train.child_step", kind, case, variant, precision, steps, threads, timeout=2400)
            runs.append({"case": case, "variant": variant, "requested": precision, **result})
            log(f"{kind} step {case} {variant} {precision}: {json.dumps(result)}")
    return _best_of(runs, ("case", "variant", "requested"))


def train_section(res: dict[str, Any], quick: bool, threads: int) -> list[dict[str, Any]]:
    """GAN steps: the bird configuration with the faithful trainer (fp32: the "before"), the default
    trainer in fp32 and in bf16 (where native) and, in full runs, the default with one option changed;
    the shapes and anime-faces presets before (faithful trainer, their earlier precision) and now."""
    native = res["machine"]["native_bf16"]
    best = "bf16" if native else "fp32"
    plan = [("birds", "reference", "fp32"), ("birds", "default", "fp32")] + ([("birds", "default", "bf16")]
                                                                          if native else [])
    if not quick:
        plan += [("birds", toggle("birds", f.name), best) for f in dataclasses.fields(SpeedOptions)]
        for case in PRESETS:
            plan += [(case, "reference", train.BEFORE_PRECISION[case]), (case, "default", "auto"),
                     (case, toggle(case, "compile"), "auto")]
    return _step_runs("gan", plan, 2 if quick else 3, 1 if quick else 2, threads)


def damsm_section(res: dict[str, Any], quick: bool, threads: int) -> list[dict[str, Any]]:
    """DAMSM steps: the bird configuration (Inception-v3 at 299 px, batch 4) and the presets, the
    faithful trainer in the earlier precision against the default one in ``auto``."""
    plan = [("birds", "reference", "fp32"), ("birds", "default", "auto")]
    if not quick:
        for case in ("shapes", "anime_faces"):
            plan += [(case, "reference", train.BEFORE_PRECISION[case]), (case, "default", "auto")]
    return _step_runs("damsm", plan, 3, 1 if quick else 2, threads)


def toggle(case: str, option: str) -> str:
    """The variant of ``case`` that differs from the case's own speed options in ``option`` only."""
    on = getattr(train.own_speed(case), option)
    return f"{'no' if on else 'with'}-{option.replace('_', '-')}"


def compile_section(threads: int) -> list[dict[str, Any]]:
    """What ``run.speed.compile`` costs before the first step of each preset: a process with an empty
    kernel cache (a first run) and a second process with that cache (a resumed or repeated run)."""
    out = []
    for case in PRESETS:
        variant = "default" if train.own_speed(case).compile else "with-compile"
        with tempfile.TemporaryDirectory() as cache:
            for state in ("empty cache", "cache of the first process"):
                result = child("train.child_step", "gan", case, variant, "auto", 2, threads, timeout=7200,
                               env={"TORCHINDUCTOR_CACHE_DIR": cache})
                out.append({"cache": state, **result})
                log(f"compile {case} ({state}): {json.dumps(result)}")
    return out


def profile_section(threads: int) -> dict[str, dict[str, Any]]:
    """Per-operator profiles of one GAN step of each preset: the faithful trainer in the preset's
    earlier precision (``before``), the preset as it ships (``after``) and that with
    ``run.speed.compile`` toggled (``toggled``)."""
    out: dict[str, dict[str, Any]] = {}
    for case in PRESETS:
        out[case] = {"before": child("prof.child_profile", case, "reference", train.BEFORE_PRECISION[case], 3, threads,
                                     timeout=3600),
                     "after": child("prof.child_profile", case, "default", "auto", 3, threads, timeout=3600),
                     "toggled": child("prof.child_profile", case, toggle(case, "compile"), "auto", 3, threads,
                                      timeout=3600)}
        for name, result in out[case].items():
            log(f"profile {case} {name}: " + ("; ".join(f"{op['name']} {op['self_ms']:.1f} ms" for op in
                                                      result.get("ops", [])[:8]) or json.dumps(result)))
    return out


def interleaved_section(quick: bool, threads: int) -> list[dict[str, Any]]:
    """Steps of each preset's variants in one process, in turn (ratios robust to a loaded machine):
    the faithful trainer, the preset as it ships, that with compile toggled; the bird configuration's
    faithful and default trainers in fp32."""
    out = []
    plan = [(case, [["reference", train.BEFORE_PRECISION[case]], ["default", "auto"], [toggle(case, "compile"), "auto"]])
            for case in PRESETS]
    if not quick:
        plan.append(("birds", [["reference", "fp32"], ["default", "fp32"], [toggle("birds", "compile"), "fp32"]]))
    for case, variants in plan:
        result = child("prof.child_interleaved", case, variants, 3 if quick else 8, threads, timeout=7200)
        out.append(result)
        log(f"interleaved {case}: {json.dumps(result)}")
    return out


# --------------------------------------------------------------------------- cold start and server
def shapes_stand_in(folder: Path) -> Path:
    """A model of the shapes preset's size with random weights (when the bundled model is absent)."""
    from attngan.config import GeneratorConfig, ModelConfig, TextEncoderConfig
    from attngan.data import shapes_vocabulary
    from attngan.hub import build_bundle, save_pretrained

    vocab = shapes_vocabulary()
    config = ModelConfig(TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=64, hidden_dim=64, max_words=18),
                         GeneratorConfig(text_dim=64, condition_dim=32, noise_dim=32, channels=16, num_residual=1,
                                         num_stages=3, first_stage_size=16), name="shapes-stand-in")
    return save_pretrained(build_bundle(config, vocab), folder / "shapes-stand-in")


def cold_start(model: Path | None, flags: list[str], reps: int) -> dict[str, Any]:
    """Wall time of ``attngan generate`` in a new process, writing one image (and its sheet)."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "attngan", "generate", "a small red circle on the left", "--seed", "0",
                   "--out", tmp, *(["--model", str(model)] if model else []), *flags]
        for _ in range(reps):
            t0 = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
            if done.returncode != 0:
                return {"error": done.stderr.strip()[-300:]}
    return {"command": shlex.join(["attngan", *command[3:]]), "seconds": min(times), "all_s": times}


def server_load(model: Path, clients: int, requests: int, duration: float) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "load_test.py"), "--model", str(model), "--clients", str(clients),
               "--requests", str(requests), "--duration", str(duration), "--max-batch", "8", "--warmup", "8"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=duration + 600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": (done.stderr or done.stdout).strip()[-300:]}
    return {**json.loads(lines[-1]), "command": shlex.join(["benchmarks/load_test.py", *command[2:]])}


def evaluate_both(model: Path, samples: int) -> dict[str, Any]:
    """The shapes evaluation (attribute accuracy, R-precision, FD) of ``model`` on the exact and fast paths."""
    from attngan.inference.pipeline import AttnGANPipeline
    from attngan.metrics.run import evaluate_shapes

    shown = model.resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown  # no machine paths in results
    out: dict[str, Any] = {"model": str(shown), "num_samples": samples}
    for name, exact in (("exact", True), ("fast", False)):
        t0 = time.perf_counter()
        summary = evaluate_shapes(AttnGANPipeline.from_pretrained(model, exact=exact), num_samples=samples, seed=0)
        out[name] = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
        out[name]["seconds"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="headline numbers only (under 2 minutes)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads [2]")
    parser.add_argument("--out", type=Path, help="output folder [benchmarks/results, or .../quick with --quick]")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--eval-model", type=Path, help="shapes model to score exact vs fast [the bundled model]")
    parser.add_argument("--eval-samples", type=int, default=500, help="images per evaluation [500]")
    parser.add_argument("--update", action="store_true",
                        help="re-measure the --only sections and merge them into the existing results.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        run_child(args.child)
        return 0
    quick = args.quick
    out = args.out or (HERE / "results" / ("quick" if quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    sections = set(args.only.split(",")) if args.only else set(SECTIONS)
    if quick and not args.only:
        sections -= {"memory", "train", "damsm", "server", "evaluate", "ablation"}
    started = time.perf_counter()
    command = shlex.join([Path(sys.executable).name, "benchmarks/run.py", *(argv or sys.argv[1:])])
    res: dict[str, Any] = {"command": command, "quick": quick,
                           "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    if args.update and (out / "results.json").exists():  # re-measure some sections of an earlier run
        previous = json.loads((out / "results.json").read_text())
        res = {**previous, "updates": [*previous.get("updates", []), {"command": command, "date_utc": res["date_utc"],
                                                                      "load_average": os.getloadavg()}]}
        res.pop("errors", None)
    res["machine"] = res["machine"] if "updates" in res else machine_info()
    log(f"machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, torch {res['machine']['torch']}, "
        f"{args.threads} threads, native bf16: {res['machine']['native_bf16']}")
    if res["machine"]["training_job_running"]:
        log("WARNING: a training job is running on this machine: timings are not representative")
    if "machine" in sections:
        res["gemm"] = {"fp32_gflops": gemm_gflops(torch.float32, 1024 if quick else 2048, 3 if quick else 8),
                       "bf16_gflops": gemm_gflops(torch.bfloat16, 1024, 2 if quick else 4)}
        log(f"GEMM: fp32 {res['gemm']['fp32_gflops']:.0f} GFLOP/s, bf16 {res['gemm']['bf16_gflops']:.0f} GFLOP/s")
    try:
        run_sections(res, sections, quick, args)
    except Exception as exc:  # keep what was measured; say what failed
        res["error"] = f"{type(exc).__name__}: {exc}"
        log(f"ERROR: {res['error']}")
    if "updates" in res:
        res["updates"][-1].update(load_average_at_end=os.getloadavg(), elapsed_s=time.perf_counter() - started)
    else:
        res["machine"]["training_job_running_at_end"] = training_running()
        res["machine"]["load_average_at_end"] = os.getloadavg()
        res["elapsed_s"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    markdown = report.markdown(res, out)
    (out / "results.md").write_text(markdown)
    print(markdown)
    log(f"wrote {out / 'results.json'}, {out / 'results.md'} and plots in {time.perf_counter() - started:.0f} s")
    return 0


@contextlib.contextmanager
def section(res: dict[str, Any], name: str) -> Iterator[None]:
    """Record an error of one section in ``res["errors"]`` and go on with the others."""
    try:
        yield
    except Exception as exc:
        res.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
        log(f"ERROR in {name}: {res['errors'][name]}")


def run_sections(res: dict[str, Any], sections: set[str], quick: bool, args: argparse.Namespace) -> None:
    bundle = gen.bird_bundle()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "flops" in sections:
            with section(res, "flops"):
                res["flops"] = {f"{kind}_{s}_stages": gen.generation_flops(bundle, kind, s)
                                for kind in ("exact", "fast") for s in (1, 2, 3)}
                log("FLOPs per image: " + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in res["flops"].items()))
        paths = ["exact", "fast"] if quick else ["exact", "fast", "onnx", "compile", "exact-bf16", "fast-bf16"]
        onnx_dir = tmp / "onnx"
        if "onnx" in paths and sections & {"generate", "parity"}:
            with section(res, "onnx_export"):
                t0 = time.perf_counter()
                gen.make_pipeline(bundle, "exact").export_onnx(onnx_dir)
                res["onnx_export_s"] = time.perf_counter() - t0
        if "generate" in sections:
            with section(res, "generate"):
                log("generation (bird configuration, 3 stages = 256x256):")
                batches = [1, 8] if quick else [1, 2, 4, 8, 16, 32]
                res["generate"] = rows = []
                rows += gen.sweep(bundle, ["exact", "fast"], batches, [3], 1 if quick else 5, 0.5 if quick else 4.0,
                                 None, log)
                rows += gen.sweep(bundle, ["exact", "fast"], [1] if quick else [1, 8], [1, 2], 1 if quick else 5,
                                  0.5 if quick else 2.0, None, log)
                fp32_extra = [p for p in paths[2:] if "bf16" not in p]
                if fp32_extra:  # beside the fast path, so that they share the same conditions
                    rows += gen.sweep(bundle, ["fast", *fp32_extra], [1, 8], [3], 5, 3.0, onnx_dir, log)
                bf16 = [p for p in paths[2:] if "bf16" in p]
                if bf16:  # without native bf16 these are slow (minutes per batch of 8): batch 1, one timed call
                    rows += gen.sweep(bundle, bf16, [1] if not res["machine"]["native_bf16"] else [1, 8], [3], 1, 0.0,
                                      onnx_dir, log)
        if "ablation" in sections:  # what each part of the fast path buys: the fast path with one part left out
            with section(res, "ablation"):
                log("fast path ablations (3 stages):")
                res["ablation"] = gen.sweep(bundle, ["fast", *gen.ABLATIONS], [1, 8], [3], 1 if quick else 5,
                                            0.5 if quick else 3.0, None, log)
        if "parity" in sections:
            with section(res, "parity"):
                slow = [] if res["machine"]["native_bf16"] else ["exact-bf16"]  # parity of fast-bf16 is enough
                res["parity"] = {"bird_random": gen.parity(bundle, [p for p in paths if p not in slow],
                                                           batch=2 if quick else 8, onnx_dir=onnx_dir)}
                if BUNDLED.exists():
                    from attngan.hub import load_pretrained

                    res["parity"]["bundled"] = gen.parity(load_pretrained(BUNDLED), ["exact", "fast"], batch=8)
                log(f"parity vs exact (PSNR dB per stage): {json.dumps(res['parity'])}")
        if "memory" in sections:
            with section(res, "memory"):
                model_dir = str(gen.save_bird_model(tmp))
                res["memory"] = [child("gen.child_generate_memory", p, b, model_dir)
                                 for p in ("exact", "fast") for b in (1, 8)]
                log(f"generation peak memory: {json.dumps(res['memory'])}")
        if "compile" in sections and not quick:
            with section(res, "compile"):
                res["compile"] = compile_section(args.threads)
        if "profile" in sections and not quick:
            with section(res, "profile"):
                res["profile"] = profile_section(args.threads)
        if "interleaved" in sections:
            with section(res, "interleaved"):
                res["interleaved"] = interleaved_section(quick, args.threads)
        if "train" in sections:
            with section(res, "train"):
                res["train"] = train_section(res, quick, args.threads)
        if "damsm" in sections:
            with section(res, "damsm"):
                res["damsm"] = damsm_section(res, quick, args.threads)
        if "loader" in sections:
            with section(res, "loader"):
                res["loader"] = [train.loader_throughput("shapes", None, 0, 5 if quick else 30, args.threads)]
                if CUB.exists():
                    for workers in ([0] if quick else [0, 2]):
                        res["loader"].append(train.loader_throughput("cub", str(CUB), workers, 5 if quick else 30,
                                                                     args.threads))
                log(f"data loaders: {json.dumps(res['loader'])}")
        if "cold" in sections:
            with section(res, "cold"):
                model = None if BUNDLED.exists() else shapes_stand_in(tmp)  # None: no --model, the bundled one
                res["cold_start"] = {"model": "bundled shapes-64" if BUNDLED.exists() else "shapes-size stand-in (random)",
                                     "fast": cold_start(model, [], 1 if quick else 3)}
                if not quick:
                    res["cold_start"]["exact"] = cold_start(model, ["--exact"], 3)
                log(f"cold start: {json.dumps(res['cold_start'])}")
        if "server" in sections:
            with section(res, "server"):
                res["server"] = server_load(gen.save_bird_model(tmp), 8, 400, 45)
                log(f"server (8 clients): {json.dumps(res['server'])}")
    eval_model = args.eval_model or (BUNDLED if BUNDLED.exists() else None)
    if "evaluate" in sections and eval_model is not None:
        with section(res, "evaluate"):
            res["evaluate"] = evaluate_both(eval_model, args.eval_samples)
        log(f"evaluation exact vs fast: {json.dumps(res.get('evaluate'))}")


if __name__ == "__main__":
    sys.exit(main())
