"""The benchmark's markdown report and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The original AttnGAN code (taoxugit/AttnGAN under torch 2.14, 2 threads, bird configuration), QUOTED,
# not measured by this script: generation figures from a 2-core AMD EPYC (AVX2); the training
# iteration from both CPU kinds of the project's machines (batch 4).
ORIGINAL = {"batch1_s": 0.14, "batch8_images_per_s": 5.0, "gen_gib_b1": 0.84, "gen_gib_b8": 1.3}
ORIGINAL_TRAIN = {True: {"s": 5.45, "gib": 3.95, "machine": "2-core x86-64 with AVX-512 BF16"},
                  False: {"s": 6.5, "gib": 4.0, "machine": "2-core AMD EPYC, AVX2 only"}}
TARGETS = {"batch1_s": 0.047, "batch8_images_per_s": 15.0, "psnr_db": 30.0, "train_gib": 3.0,
           "cold_s": 4.0, "server_fraction": 0.8, "loader_factor": 5.0, "preset_speedup": 2.0}
TRAIN_SPEEDUP = {True: 2.5, False: 1.6}  # the default trainer against the original's iteration, by native bf16


def training_rows(res: dict[str, Any]) -> list[list[str]]:
    """The training targets: the bird iteration against the (quoted) original, peak memory, and the
    preset and DAMSM steps against the faithful trainer measured in the same run."""
    native = bool(res["machine"]["native_bf16"])
    quote = ORIGINAL_TRAIN[native]
    gan = {(t.get("case"), t.get("variant"), t.get("requested")): t for t in res.get("train", [])}
    best = "bf16" if native else "fp32"
    default = gan.get(("birds", "default", best), {})
    ts, tm = default.get("s_min"), default.get("peak_rss_gib")
    need = quote["s"] / TRAIN_SPEEDUP[native]
    rows = [[f"training iteration, bird configuration, batch 4, {best} (s)",
             f"{quote['s']} (quoted: {quote['machine']})", _fmt(gan.get(("birds", "reference", "fp32"), {}).get("s_min")),
             _fmt(ts) + (f" ({quote['s'] / ts:.2f}x)" if ts else ""), f"≤ {need:.2f} ({TRAIN_SPEEDUP[native]}x)",
             _status(ts is not None and ts <= need, ts, need, True)],
            ["training peak memory (GiB)", f"{quote['gib']} (quoted)",
             _fmt(gan.get(("birds", "reference", "fp32"), {}).get("peak_rss_gib")), _fmt(tm),
             f"≤ {TARGETS['train_gib']:.0f}", _status(tm is not None and tm <= TARGETS["train_gib"], tm,
                                                      TARGETS["train_gib"], True)]]
    steps = {(t.get("case"), t.get("variant")): t for t in res.get("train", [])}
    damsm = {(t.get("case"), t.get("variant")): t for t in res.get("damsm", [])}
    for label, table_, case in (("shapes preset GAN step", steps, "shapes"),
                                ("anime-faces preset GAN step", steps, "anime_faces"),
                                ("DAMSM step, bird configuration", damsm, "birds"),
                                ("shapes preset DAMSM step", damsm, "shapes"),
                                ("anime-faces preset DAMSM step", damsm, "anime_faces")):
        before, now = table_.get((case, "reference"), {}).get("s_min"), table_.get((case, "default"), {}).get("s_min")
        if before is None or now is None:
            continue
        factor = before / now
        rows.append([f"{label} (s)", "–", f"{before:.3g} (before)", f"{now:.3g} ({factor:.2f}x)",
                     f"≥ {TARGETS['preset_speedup']:.0f}x", _status(factor >= TARGETS["preset_speedup"], factor,
                                                                     TARGETS["preset_speedup"], False)])
    return rows


def _row(results: dict[str, Any], path: str, batch: int, stages: int = 3) -> dict[str, Any] | None:
    """The first (main sweep) measurement of ``path`` at ``batch`` and ``stages``."""
    for row in results.get("generate", []):
        if row["path"] == path and row["batch"] == batch and row["stages"] == stages:
            return row
    return None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


def _status(ok: bool | None, value: float | None, target: float, lower_is_better: bool) -> str:
    if value is None or ok is None:
        return "not measured"
    if ok:
        return "**met**"
    factor = value / target if lower_is_better else target / value
    return f"missed ({factor:.2f}x off)"


def target_rows(res: dict[str, Any]) -> list[list[str]]:
    rows = []
    e1, f1 = _row(res, "exact", 1), _row(res, "fast", 1)
    e8, f8 = _row(res, "exact", 8), _row(res, "fast", 8)
    b1 = f1 and f1["s_per_call"]
    rows.append(["generation, batch 1 (s/call)", _fmt(ORIGINAL["batch1_s"]), _fmt(e1 and e1["s_per_call"]), _fmt(b1),
                 f"≤ {TARGETS['batch1_s']}", _status(b1 is not None and b1 <= TARGETS["batch1_s"], b1,
                                                    TARGETS["batch1_s"], True)])
    r8 = f8 and f8["images_per_s"]
    rows.append(["generation, batch 8 (images/s)", _fmt(ORIGINAL["batch8_images_per_s"]),
                 _fmt(e8 and e8["images_per_s"]), _fmt(r8), f"≥ {TARGETS['batch8_images_per_s']:.0f}",
                 _status(r8 is not None and r8 >= TARGETS["batch8_images_per_s"], r8, TARGETS["batch8_images_per_s"],
                         False)])
    parity = res.get("parity", {}).get("bird_random", {}).get("fast")
    p = parity and parity["psnr_db"][-1]
    rows.append(["fast vs exact, 256 px (PSNR dB)", "–", "∞", _fmt(p), f"≥ {TARGETS['psnr_db']:.0f}",
                 _status(p is not None and p >= TARGETS["psnr_db"], p, TARGETS["psnr_db"], False)])
    mem = {(m.get("path"), m.get("batch")): m.get("peak_rss_gib") for m in res.get("memory", [])}
    for b in (1, 8):
        rows.append([f"generation peak memory, batch {b} (GiB)", _fmt(ORIGINAL[f"gen_gib_b{b}"]),
                     _fmt(mem.get(("exact", b))), _fmt(mem.get(("fast", b))), "–", "reported"])
    rows += training_rows(res)
    cold = res.get("cold_start", {})
    cs = cold.get("fast", {}).get("seconds")
    rows.append([f"cold `attngan generate` ({cold.get('model', '–')}) (s)", "–",
                 _fmt(cold.get("exact", {}).get("seconds")), _fmt(cs), f"≤ {TARGETS['cold_s']:.0f}",
                 _status(cs is not None and cs <= TARGETS["cold_s"], cs, TARGETS["cold_s"], True)])
    server = res.get("server", {}).get("images_per_s")
    if server is not None and r8:
        frac = server / r8
        rows.append(["server, 8 clients (images/s; fraction of offline batch 8)", "–", "–",
                     f"{server:.3g} ({frac:.0%})", f"≥ {TARGETS['server_fraction']:.0%}",
                     _status(frac >= TARGETS["server_fraction"], frac, TARGETS["server_fraction"], False)])
    loaders = [x for x in res.get("loader", []) if x.get("data") == "cub"]
    ts = next((t.get("s_min") for t in res.get("train", []) if t.get("case") == "birds" and t.get("variant") == "default"),
              None)
    if loaders and ts:
        best = max(x["images_per_s"] for x in loaders)
        need = 4 / ts
        rows.append(["CUB loader vs training consumption (x)", "–", "–", f"{best / need:.1f}x ({best:.0f} images/s)",
                     f"≥ {TARGETS['loader_factor']:.0f}x",
                     _status(best / need >= TARGETS["loader_factor"], best / need, TARGETS["loader_factor"], False)])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def generation_rows(res: dict[str, Any], key: str = "generate") -> list[list[str]]:
    flops = res.get("flops", {})
    peak = res.get("gemm", {}).get("fp32_gflops")
    rows = []
    for r in res.get(key, []):
        model_flops = flops.get(f"exact_{r['stages']}_stages")
        executed = flops.get(f"{'fast' if r['path'].startswith('fast') else 'exact'}_{r['stages']}_stages")
        eff = model_flops * r["images_per_s"] / 1e9 if model_flops else None
        exe = executed * r["images_per_s"] / 1e9 if executed and r["path"] in ("exact", "fast") else None
        rows.append([r["path"], f"{r['resolution']}", str(r["batch"]),
                     f"{r['s_per_call']:.4f} ({r.get('s_per_call_median', r['s_per_call']):.4f})",
                     f"{r['s_per_image'] * 1000:.1f}", f"{r['images_per_s']:.2f}", _fmt(eff),
                     _fmt(exe), f"{exe / peak:.0%}" if exe and peak else "–"])
    return rows


def markdown(res: dict[str, Any], out: Path) -> str:
    m = res["machine"]
    parts = [f"# attngan benchmark ({'quick' if res['quick'] else 'full'})", "",
             f"- Command: `{res['command']}` ({res['date_utc']} UTC, {res['elapsed_s']:.0f} s)",
             f"- Machine: {m['cpu']}, {m['cores']} cores ({m['threads_used']} threads used), "
             f"CPU capability {m['cpu_capability']}, native bf16: {m['native_bf16']}, torch {m['torch']}, "
             f"Python {m['python']}",
             f"- Load average at start: {', '.join(f'{x:.2f}' for x in m['load_average'])}, at end: "
             f"{', '.join(f'{x:.2f}' for x in m.get('load_average_at_end', []))}; `attngan train` "
             f"running: {m['training_job_running']} at start, {m.get('training_job_running_at_end')} at end"]
    for update in res.get("updates", []):
        parts.append(f"- Sections re-measured with `{update['command']}` ({update['date_utc']} UTC, load average "
                     f"{', '.join(f'{x:.2f}' for x in update['load_average'])})")
    if res.get("errors") or res.get("error"):
        parts.append(f"- Errors: `{res.get('errors') or res.get('error')}`")
    if "gemm" in res:
        parts.append(f"- Machine limits: fp32 GEMM {res['gemm']['fp32_gflops']:.0f} GFLOP/s, "
                     f"bf16 GEMM {res['gemm']['bf16_gflops']:.0f} GFLOP/s")
    if "flops" in res:
        f = res["flops"]
        parts.append(f"- FLOPs per image (FlopCounterMode): reference {f['exact_3_stages'] / 1e9:.2f} G "
                     f"(64/128/256 px: {f['exact_1_stages'] / 1e9:.2f} / {f['exact_2_stages'] / 1e9:.2f} / "
                     f"{f['exact_3_stages'] / 1e9:.2f} G), executed by the fast path {f['fast_3_stages'] / 1e9:.2f} G")
    parts += ["", "## Targets", "", "The original column is quoted from earlier measurements of the original code "
              "(the machine named), not measured by this run.", "",
              table(["metric", "original", "exact / before (this run)", "fast / now (this run)", "target", "status"],
                    target_rows(res))]
    if res.get("generate"):
        parts += ["", "## Generation (bird configuration)", "",
                  "s/call: best call (median in brackets); the paths of one table block ran in alternation. "
                  "Model GFLOP/s = the reference model's FLOPs per image x images/s; executed = the FLOPs the "
                  "path runs; % = executed GFLOP/s of the fp32 GEMM limit.", "",
                  table(["path", "px", "batch", "s/call (median)", "ms/image", "images/s", "model GFLOP/s",
                         "executed GFLOP/s", "% fp32 peak"], generation_rows(res))]
        if res.get("ablation"):
            parts += ["", "### The fast path with one part left out", "",
                      table(["path", "px", "batch", "s/call (median)", "ms/image", "images/s", "model GFLOP/s",
                             "executed GFLOP/s", "% fp32 peak"], generation_rows(res, "ablation"))]
        plots = plot(res, out)
        parts += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    if res.get("parity"):
        rows = [[model, path, ", ".join(f"{x:.1f}" for x in v["psnr_db"]), f"{v['max_abs']:.2g}"]
                for model, paths in res["parity"].items() for path, v in paths.items()]
        parts += ["", "## Image parity with the exact path (same seeds)", "",
                  table(["model", "path", "PSNR dB per stage", "max abs diff (last stage)"], rows)]
    for key, title in (("train", "GAN training steps (bird configuration at batch 4 with Inception-v3 DAMSM; presets "
                                 "as shipped)"),
                       ("damsm", "DAMSM pretraining steps (bird configuration: Inception-v3 at 299 px, batch 4)")):
        if res.get(key):
            rows = [[t.get("case", "?"), t.get("variant", "?"), str(t.get("precision", t.get("requested", "?"))),
                     str(t.get("batch", "")), _fmt(t.get("s_per_step")), _fmt(t.get("s_min")),
                     _fmt(t.get("flops", 0) / 1e9 if t.get("flops") else None), _fmt(t.get("peak_rss_gib")),
                     str(t.get("error", ""))] for t in res[key]]
            parts += ["", f"## {title}", "", "`reference`: the faithful trainer (`SpeedOptions.reference()`, the "
                      "original's computation module for module); `default`: today's trainer; `no-X` / `with-X`: the "
                      "default with one speed option changed.", "",
                      table(["case", "variant", "precision", "batch", "s/step (median)", "best s", "GFLOP/step",
                             "peak GiB", "error"], rows)]
    parts += interleaved_parts(res) + compile_parts(res) + profile_parts(res)
    if res.get("loader"):
        rows = [[x["data"], str(x["workers"]), f"{x['images_per_s']:.1f}", str(x["dataset_items"])]
                for x in res["loader"]]
        parts += ["", "## Data loaders (64/128/256 px, training mode, batch 4)", "",
                  table(["data", "workers", "images/s", "items"], rows)]
    if res.get("evaluate"):
        ev = res["evaluate"]
        keys = [k for k in ev["exact"] if k != "seconds" and k in ev["fast"]]
        rows = [[k, _fmt(ev["exact"][k], 4), _fmt(ev["fast"][k], 4), _fmt(ev["fast"][k] - ev["exact"][k], 2)]
                for k in keys]
        parts += ["", f"## Evaluation, exact vs fast ({ev['model']}, {ev['num_samples']} images, same seeds)", "",
                  table(["score", "exact", "fast", "difference"], rows)]
    for key in ("cold_start", "server", "onnx_export_s"):
        if key in res:
            parts += ["", f"- {key}: `{res[key]}`"]
    return "\n".join(parts) + "\n"


def interleaved_parts(res: dict[str, Any]) -> list[str]:
    """The steps of several variants timed in turn in one process (ratios that hold under load)."""
    rows = []
    for run in res.get("interleaved", []):
        if "variants" not in run:
            rows.append([run.get("case", "?"), "–", "–", "–", "–", "–", "–", str(run.get("error", ""))])
            continue
        for v in run["variants"]:
            rows.append([run["case"], v["variant"], v["precision"], _fmt(v["s_min"]), _fmt(v["s_median"]),
                         f"{v['speedup_min']:.2f}x / {v['speedup_median']:.2f}x", _fmt(v["first_step_s"]), ""])
    if not rows:
        return []
    return ["", "## Training steps side by side (one process, variants in turn)", "",
            "Each case's variants were built in one process and stepped in turn, round after round, so that load "
            "from elsewhere hits them alike: the ratios hold where absolute times may not. Against the first "
            "variant of the case (best / median). The first step (compilation included) is timed apart. "
            "Process-wide settings (`keep_heap`) reach every variant of the process once one asks for them, so "
            "`reference` here runs with them: its ratios understate the default's gain (see the table above).", "",
            table(["case", "variant", "precision", "best s", "median s", "speed-up", "first step s", "error"], rows)]


def compile_parts(res: dict[str, Any]) -> list[str]:
    """What ``run.speed.compile`` costs before the first step: an empty kernel cache, then a new process."""
    rows = []
    for r in res.get("compile", []):
        cache = r.get("kernel_cache", {})
        rows.append([r.get("case", "?"), r.get("cache", "?"), _fmt(r.get("first_step_s")), _fmt(r.get("s_min")),
                     f"{cache.get('fx_hits', '–')} / {cache.get('fx_misses', '–')}", str(r.get("error", ""))])
    if not rows:
        return []
    return ["", "## Compilation (`run.speed.compile`)", "",
            "The first step of a compiled preset builds its kernels (inductor, C++) or loads them from the kernel "
            "cache; a first run starts with an empty cache, a resumed or repeated run with the first run's.", "",
            table(["case", "kernel cache", "first step s", "later steps, best s", "graphs from cache / built", "error"],
                  rows)]


def profile_parts(res: dict[str, Any], rows: int = 15) -> list[str]:
    """Per case, the operators that take the most self time before (the faithful trainer) and after."""
    parts: list[str] = []
    for case, runs in res.get("profile", {}).items():
        before = runs.get("before", {})
        for key in ("after", "toggled"):
            if key not in runs:
                continue
            now = runs[key]
            if "ops" not in before or "ops" not in now:
                parts += ["", f"- profile {case} {key}: `{before.get('error') or now.get('error')}`"]
                continue
            parts += ["", f"### {case}: `{before['variant']}` ({before['precision']}) -> `{now['variant']}` "
                      f"({now['precision']}), batch {now['batch']}", "",
                      f"Step {before['s_per_step']:.3g} s -> {now['s_per_step']:.3g} s unprofiled (separate "
                      f"processes); first step {now['first_step_s']:.3g} s (compilation included).", "",
                      table(["operator (self CPU time)", "before ms/step", "share", "after ms/step", "share"],
                            profile_rows(before, now, rows))]
    if parts:
        parts = ["", "## Where a preset GAN step spends its time (torch.profiler, self CPU time per step)", "",
                 "`compiled kernels (inductor)`: the fused kernels of `run.speed.compile`, which are not operators "
                 "(their self time is that of the compiled graphs' calls)."] + parts
    return parts


def profile_rows(before: dict[str, Any], after: dict[str, Any], rows: int = 15) -> list[list[str]]:
    """The operators that take the most self time in either profile: ms per step and share of the
    profiled time, before and after; the others summed; the totals."""
    b = {op["name"]: op["self_ms"] for op in before["ops"]}
    a = {op["name"]: op["self_ms"] for op in after["ops"]}
    tb, ta = before["total_self_ms"], after["total_self_ms"]
    names = sorted((set(b) | set(a)) - {"other operators"}, key=lambda n: -max(b.get(n, 0.0), a.get(n, 0.0)))[:rows]
    out = [[f"`{n}`", *_share(b.get(n), tb), *_share(a.get(n), ta)] for n in names]
    out.append(["all other operators", *_share(tb - sum(b.get(n, 0.0) for n in names), tb),
                *_share(ta - sum(a.get(n, 0.0) for n in names), ta)])
    out.append(["**profiled total**", f"{tb:.1f}", "100%", f"{ta:.1f}", "100%"])
    return out


def _share(ms: float | None, total: float) -> list[str]:
    return ["–", "–"] if ms is None else [f"{ms:.1f}", f"{ms / total:.0%}" if total else "–"]


def plot(res: dict[str, Any], out: Path) -> list[Path]:
    """Time per image vs batch size (256 px) and vs resolution; PNGs in ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    rows = res["generate"]
    paths = sorted({r["path"] for r in rows}, key=lambda p: (p != "exact", p))
    by_batch = {path: sorted((r["batch"], r["s_per_image"] * 1000) for r in rows
                             if r["path"] == path and r["stages"] == 3) for path in paths}
    by_resolution = {f"{path}, batch {batch}": sorted((r["resolution"], r["s_per_image"] * 1000) for r in rows
                                                       if r["path"] == path and r["batch"] == batch)
                     for path in ("exact", "fast") for batch in (1, 8)}
    return [_log_plot(plt, by_batch, 1, "batch size", "ms per image (256x256, log scale)",
                      "Time per image vs batch size", out / "time_vs_batch.png"),
            _log_plot(plt, by_resolution, 2, "output resolution (stages 1, 2, 3)", "ms per image (log scale)",
                      "Time per image vs resolution", out / "time_vs_resolution.png")]


def _log_plot(plt: Any, series: dict[str, list[tuple[float, float]]], min_points: int, xlabel: str, ylabel: str,
              title: str, path: Path) -> Path:
    """One log-log line plot of ``series`` (label -> points) saved as ``path``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in series.items():
        if len(pts) >= min_points:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
