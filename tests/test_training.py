"""Training end to end on tiny configurations: DAMSM, GAN, export, resume, SIGKILL, torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attngan.hub import load_damsm, load_pretrained
from attngan.training import checkpoint as ckpt
from attngan.training.damsm import train_damsm
from attngan.training.gan import train_gan
from attngan.training.options import resolve_config

TINY_DAMSM = [
    "text_encoder.word_embedding_dim=16", "text_encoder.hidden_dim=16", "text_encoder.dropout=0.0",
    "image_encoder.image_size=32", "image_encoder.light_channels=8", "image_encoder.embedding_dim=16",
    "data.extra={size: 64}", "run.batch_size=8", "run.log_every=1", "run.checkpoint_every=2",
]
TINY_GAN = [
    "generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "generator.num_stages=2",
    "generator.first_stage_size=16", "discriminator.channels=8", "data.extra={size: 64}", "run.batch_size=8",
    "run.log_every=1", "run.checkpoint_every=1", "run.sample_every=0", "run.deterministic=true",
]


@pytest.fixture(scope="module")
def damsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("damsm")
    cfg = resolve_config("damsm", "shapes", TINY_DAMSM + ["run.max_steps=4", f"run.out_dir={out}"])
    return train_damsm(cfg)


def gan_config(out: Path, damsm: Path, steps: int, extra: list[str] | None = None):  # noqa: ANN201
    return resolve_config("gan", "shapes", TINY_GAN + [f"run.max_steps={steps}", f"run.out_dir={out}",
                                                       f"damsm={damsm}"] + (extra or []))


def test_damsm_run_exports_encoders_and_logs(damsm_dir: Path) -> None:
    enc = load_damsm(damsm_dir)
    assert enc.text_encoder.config.hidden_dim == 16
    run = damsm_dir.parent
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and '"loss_w0"' in lines[0]
    assert ckpt.list_checkpoints(run / "checkpoints-damsm")
    assert (run / "damsm_config.yaml").exists()


def test_gan_run_samples_checkpoints_and_exports(tmp_path: Path, damsm_dir: Path) -> None:
    cfg = gan_config(tmp_path, damsm_dir, 2, ["run.sample_every=2", "run.keep_checkpoints=1"])
    model = train_gan(cfg)
    bundle = load_pretrained(model)
    assert bundle.config.generator.image_sizes == (16, 32)
    assert len(ckpt.list_checkpoints(tmp_path / "checkpoints")) == 1  # only the newest kept
    assert list((tmp_path / "samples").glob("*.png"))
    assert (tmp_path / "train_config.yaml").exists()


def final_generator(out: Path) -> dict[str, torch.Tensor]:
    found = ckpt.latest_checkpoint(out / "checkpoints")
    assert found is not None
    return found[1]["models"]["ema"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0), k


def test_resume_continues_exactly(tmp_path: Path, damsm_dir: Path) -> None:
    train_gan(gan_config(tmp_path / "full", damsm_dir, 4))
    train_gan(gan_config(tmp_path / "split", damsm_dir, 2))
    train_gan(gan_config(tmp_path / "split", damsm_dir, 4), resume=True)
    assert_same(final_generator(tmp_path / "full"), final_generator(tmp_path / "split"))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path, damsm_dir: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        train_gan(gan_config(tmp_path, damsm_dir, 2), resume=True)


def _cli(args: list[str], **kw) -> subprocess.Popen:  # noqa: ANN003
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "attngan", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _train_args(out: Path, damsm: Path, steps: int) -> list[str]:
    sets = TINY_GAN + [f"run.max_steps={steps}", f"damsm={damsm}", "run.threads=1"]
    return ["train", "--preset", "shapes", "--out", str(out), *[a for s in sets for a in ("--set", s)]]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path, damsm_dir: Path) -> None:
    steps = 6
    ref = _cli(_train_args(tmp_path / "ref", damsm_dir, steps))
    assert ref.wait(timeout=300) == 0, ref.stdout.read() if ref.stdout else ""
    out = tmp_path / "killed"
    for kill_after in (2, 4):  # kill -9 once checkpoint N exists, then resume
        proc = _cli(_train_args(out, damsm_dir, steps) + (["--resume"] if kill_after > 2 else []))
        deadline = time.time() + 240
        while time.time() < deadline:
            names = [p.name for p in ckpt.list_checkpoints(out / "checkpoints")]
            if any(int(n[5:13]) >= kill_after for n in names) or proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found = ckpt.latest_checkpoint(out / "checkpoints")
        assert found is not None  # the last complete checkpoint loads
    resumed = _cli(_train_args(out, damsm_dir, steps) + ["--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read() if resumed.stdout else ""
    assert_same(final_generator(tmp_path / "ref"), final_generator(out))


@pytest.mark.slow
def assert_same_updates(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor],
                        lr: float, steps: int) -> float:
    """Two runs from the same ``start`` moved their weights the same way: every element within the
    worst an Adam step does with a gradient whose sign rounding flips (2 lr a step), and the two
    runs' difference small against the distance either travelled. Returns that ratio."""
    assert a.keys() == b.keys()
    differ = travelled = 0.0
    for k, x in a.items():
        if not x.is_floating_point() or k.endswith(("running_mean", "running_var")):
            continue
        diff = (x.double() - b[k].double()).abs()
        assert diff.max() <= 2 * lr * steps + 1e-5, k
        differ += float((diff ** 2).sum())
        travelled += float(((x.double() - start[k].double()) ** 2).sum())
    ratio = (differ / travelled) ** 0.5
    assert ratio <= 0.1, f"the runs differ by {ratio:.3f} of the distance they moved"
    return ratio


def logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_torchrun_two_processes_match_one(tmp_path: Path, damsm_dir: Path) -> None:
    steps = 6
    one = _cli(_train_args(tmp_path / "one", damsm_dir, steps))
    assert one.wait(timeout=300) == 0, one.stdout.read() if one.stdout else ""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "attngan", *_train_args(tmp_path / "two", damsm_dir, steps)]
    two = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    # the losses of every step (computed on the global batch)
    logs_one, logs_two = logged(tmp_path / "one"), logged(tmp_path / "two")
    assert [r["step"] for r in logs_one] == [r["step"] for r in logs_two] == list(range(1, steps + 1))
    for r1, r2 in zip(logs_one, logs_two, strict=True):
        for key in (k for k in r1 if k.startswith("loss")):
            assert r2[key] == pytest.approx(r1[key], rel=1e-3, abs=1e-5), (r1["step"], key)
    a = ckpt.latest_checkpoint(tmp_path / "one" / "checkpoints")
    b = ckpt.latest_checkpoint(tmp_path / "two" / "checkpoints")
    assert a is not None and b is not None and a[1]["step"] == b[1]["step"] == steps
    from attngan.training.distributed import DistInfo
    from attngan.training.gan import GANTrainer

    start = GANTrainer(gan_config(tmp_path / "start", damsm_dir, steps), DistInfo())  # the same seeded weights
    lr = start.cfg.optim_g.lr
    ratios = [assert_same_updates(a[1]["models"]["generator"], b[1]["models"]["generator"],
                                  start.generator.state_dict(), lr, steps)]
    for da, db, d0 in zip(a[1]["models"]["discriminators"], b[1]["models"]["discriminators"], start.discriminators,
                          strict=True):
        ratios.append(assert_same_updates(da, db, d0.state_dict(), lr, steps))
    print("difference / distance travelled:", [round(r, 4) for r in ratios])
    ema_a, ema_b = a[1]["models"]["ema"], b[1]["models"]["ema"]
    assert ema_a["num_updates"] == ema_b["num_updates"] == steps
    for k in ema_a:
        if ema_a[k].is_floating_point():
            assert (ema_a[k] - ema_b[k]).abs().max() <= 2 * lr * steps + 1e-5, k


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_picks_bf16_only_with_native_support(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from attngan.config import ConfigError
    from attngan.precision import autocast, resolve_precision
    from attngan.training.options import RunOptions

    assert RunOptions(precision="auto").precision == "auto"
    with pytest.raises(ConfigError, match="run.precision"):
        RunOptions(precision="fp16")
    monkeypatch.setenv("ATTNGAN_NATIVE_BF16", "1" if native else "0")
    with autocast("auto", torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == (torch.bfloat16 if native else torch.float32)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")  # what the resolved config records
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
