"""Training end to end on tiny configurations: DAMSM, GAN, export, resume, torchrun (kills, signals
and write failures: ``tests/test_reliability_*.py``)."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attngan.config import ConfigError
from attngan.hub import load_damsm, load_pretrained, save_pretrained, state_dict_of
from attngan.precision import FORCE_ENV
from attngan.training import checkpoint as ckpt
from attngan.training.damsm import train_damsm
from attngan.training.gan import train_gan
from attngan.training.options import resolve_config

TINY_DAMSM = [
    "text_encoder.word_embedding_dim=16", "text_encoder.hidden_dim=16", "text_encoder.dropout=0.0",
    "image_encoder.image_size=32", "image_encoder.light_channels=8", "image_encoder.embedding_dim=16",
    "data.extra={size: 64}", "run.batch_size=8", "run.log_every=1", "run.checkpoint_every=2",
    "run.precision=fp32",  # equality with the reference runs below is an fp32 promise; bf16 has its own tests
]
TINY_GAN = [
    "generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "generator.num_stages=2",
    "generator.first_stage_size=16", "discriminator.channels=8", "data.extra={size: 64}", "run.batch_size=8",
    "run.log_every=1", "run.checkpoint_every=1", "run.sample_every=0", "run.deterministic=true",
    "run.precision=fp32",  # runs here must equal each other whatever the host's default precision
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
    assert bundle.config.damsm == cfg.loss  # the DAMSM settings it was trained with
    assert len(bundle.example_captions) == 6  # shapes captions of its data set that it reads whole
    for caption in bundle.example_captions:
        assert not bundle.vocab.encode(caption, bundle.config.text_encoder.max_words).dropped, caption
    assert len(ckpt.list_checkpoints(tmp_path / "checkpoints")) == 1  # only the newest kept
    assert list((tmp_path / "samples").glob("*.png"))
    assert (tmp_path / "train_config.yaml").exists()


def test_a_gan_trains_against_a_model_folders_encoders(tmp_path: Path, damsm_dir: Path) -> None:
    """``damsm`` may name a model folder: its text and image encoders, bit for bit, are the teachers."""
    model = train_gan(gan_config(tmp_path / "first", damsm_dir, 1))
    second = train_gan(gan_config(tmp_path / "second", model, 1))
    teachers, own = load_damsm(model), load_pretrained(model)
    assert own.image_encoder is not None
    for a, b in ((teachers.text_encoder, own.text_encoder), (teachers.image_encoder, own.image_encoder)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    again = load_pretrained(second)
    assert again.image_encoder is not None and again.vocab == own.vocab
    assert all(torch.equal(x, y) for x, y in zip(again.image_encoder.state_dict().values(),
                                                 own.image_encoder.state_dict().values(), strict=True))
    bare = tmp_path / "bare"
    save_pretrained(dataclasses.replace(own, image_encoder=None,
                                        config=dataclasses.replace(own.config, image_encoder=None)), bare)
    with pytest.raises(ConfigError, match=f"{bare} is a model folder without an image encoder"):
        load_damsm(bare)


def final_generator(out: Path) -> dict[str, torch.Tensor]:
    found = ckpt.latest_checkpoint(out / "checkpoints")
    assert found is not None
    return found[1]["models"]["ema"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0), k


COMPILED = ["run.speed.compile=true"]


@pytest.mark.parametrize("extra", [[], pytest.param(COMPILED, marks=[pytest.mark.slow, pytest.mark.compile])],
                         ids=["eager", "compiled"])
def test_resume_continues_exactly(extra: list[str], tmp_path: Path, damsm_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled, the resumed part (compiled too) builds no kernel: in this process it reuses the
    compiled code of the first part, as a new process takes it from the on-disk cache
    (``tests/test_compiled_step.py``)."""
    from attngan.training.compiled import cache_counters, compiler_works
    from attngan.training.gan import GANTrainer

    if extra and not compiler_works():
        pytest.skip("torch.compile does not work on this machine")
    compiled: list[bool] = []
    build = GANTrainer._compile

    def counted(trainer: GANTrainer, steps: list) -> None:
        compiled.append(True)
        build(trainer, steps)

    monkeypatch.setattr(GANTrainer, "_compile", counted)
    train_gan(gan_config(tmp_path / "full", damsm_dir, 4, extra))
    train_gan(gan_config(tmp_path / "split", damsm_dir, 2, extra))
    before = cache_counters()
    train_gan(gan_config(tmp_path / "split", damsm_dir, 4, extra), resume=True)
    assert_same(final_generator(tmp_path / "full"), final_generator(tmp_path / "split"))
    after = cache_counters()
    assert len(compiled) == (3 if extra else 0)  # each of the three parts compiled its step
    if extra:
        assert after["fx_misses"] == before["fx_misses"] and after["aot_misses"] == before["aot_misses"], after


def test_resume_in_another_precision_says_so(tmp_path: Path, damsm_dir: Path, caplog: pytest.LogCaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``run.precision: auto`` resolves per machine: a run resumed on a machine of another kind goes
    on in that machine's precision, and the log names the switch and how to avoid it."""
    monkeypatch.setenv(FORCE_ENV, "1")  # started where auto is bf16
    train_gan(gan_config(tmp_path, damsm_dir, 1, ["run.precision=auto"]))
    monkeypatch.setenv(FORCE_ENV, "0")  # resumed where it is fp32
    with caplog.at_level(logging.WARNING, logger="attngan.training.loop"):
        train_gan(gan_config(tmp_path, damsm_dir, 2, ["run.precision=auto"]), resume=True)
    assert "trained in bf16; it goes on in fp32 (run.precision=bf16 keeps the first)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="attngan.training.loop"):  # the same precision: no word
        train_gan(gan_config(tmp_path, damsm_dir, 3, ["run.precision=fp32"]), resume=True)
    assert "goes on in" not in caplog.text


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path, damsm_dir: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        train_gan(gan_config(tmp_path, damsm_dir, 2), resume=True)


def _cli(args: list[str], **kw) -> subprocess.Popen:  # noqa: ANN003
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "attngan", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _train_args(out: Path, damsm: Path, steps: int, extra: list[str] | None = None) -> list[str]:
    sets = TINY_GAN + [f"run.max_steps={steps}", f"damsm={damsm}", "run.threads=1"] + (extra or [])
    return ["train", "--preset", "shapes", "--out", str(out), *[a for s in sets for a in ("--set", s)]]


TORCHRUN_STEPS = 6


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory, damsm_dir: Path) -> Path:
    """The run that the multi-process runs below must reproduce: one process, six steps."""
    out = tmp_path_factory.mktemp("one") / "run"
    one = _cli(_train_args(out, damsm_dir, TORCHRUN_STEPS))
    assert one.wait(timeout=300) == 0, one.stdout.read() if one.stdout else ""
    return out


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


def assert_same_run(a: Path, b: Path, damsm_dir: Path) -> None:
    """Run ``b`` (several processes) reproduces run ``a`` (one process): the logged losses of every
    step (each the mean over the global batch) to 1e-3, and the weights of the last checkpoint
    (generator, discriminators, EMA) and of the exported model by :func:`assert_same_updates`."""
    la, lb = (read_metrics(run / "metrics.jsonl") for run in (a, b))
    assert [r["step"] for r in la] == [r["step"] for r in lb] == list(range(1, TORCHRUN_STEPS + 1))
    for ra, rb in zip(la, lb, strict=True):
        losses = [k for k in ra if k.startswith("loss")]
        assert losses and set(losses) == {k for k in rb if k.startswith("loss")}
        for k in losses:
            assert rb[k] == pytest.approx(ra[k], rel=1e-3, abs=1e-5), (ra["step"], k)
    ca, cb = ckpt.latest_checkpoint(a / "checkpoints"), ckpt.latest_checkpoint(b / "checkpoints")
    assert ca is not None and cb is not None and ca[1]["step"] == cb[1]["step"] == TORCHRUN_STEPS
    from attngan.training.distributed import DistInfo
    from attngan.training.gan import GANTrainer

    start = GANTrainer(gan_config(a.parent / "start", damsm_dir, TORCHRUN_STEPS), DistInfo())  # the seeded weights
    lr, steps = start.cfg.optim_g.lr, TORCHRUN_STEPS
    assert_same_updates(ca[1]["models"]["generator"], cb[1]["models"]["generator"], start.generator.state_dict(),
                        lr, steps)
    for da, db, d0 in zip(ca[1]["models"]["discriminators"], cb[1]["models"]["discriminators"], start.discriminators,
                          strict=True):
        assert_same_updates(da, db, d0.state_dict(), lr, steps)
    ema_a, ema_b = ca[1]["models"]["ema"], cb[1]["models"]["ema"]
    assert int(ema_a["num_updates"]) == int(ema_b["num_updates"]) == steps
    exported = state_dict_of(load_pretrained(a / "model")), state_dict_of(load_pretrained(b / "model"))
    for sa, sb in ((ema_a, ema_b), exported):
        for k, x in sa.items():
            if x.is_floating_point():
                assert (x - sb[k]).abs().max() <= 2 * lr * steps + 1e-5, k


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], pytest.param(COMPILED, marks=pytest.mark.compile)], ids=["eager", "compiled"])
def test_torchrun_two_processes_match_one(extra: list[str], tmp_path: Path, damsm_dir: Path,
                                          one_process: Path) -> None:
    """Also with ``run.speed.compile`` on in the two processes (against the eager one-process run)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "attngan", *_train_args(tmp_path / "two", damsm_dir, TORCHRUN_STEPS, extra)]
    two = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800 if extra else 400)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert_same_run(one_process, tmp_path / "two", damsm_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_torchrun_two_nodes_through_rendezvous_match_one(tmp_path: Path, damsm_dir: Path, one_process: Path) -> None:
    """Two torchrun agents, as on two machines, meet through the c10d rendezvous on loopback; the
    rendezvous gives them their node ranks, and the run equals the one-process run."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONUNBUFFERED="1")
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes: list[subprocess.Popen] = []
    try:
        for i, log in enumerate(logs):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                   "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", f"test-{port}",
                   "--rdzv_conf", f"is_host={'true' if i == 0 else 'false'}", "--local_addr", "127.0.0.1",
                   "--max_restarts", "0", "-m", "attngan", "-v",
                   *_train_args(tmp_path / "nodes", damsm_dir, TORCHRUN_STEPS)]
            with open(log, "w") as f:
                nodes.append(subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=tmp_path))
        codes = [node.wait(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    text = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n".join(t[-3000:] for t in text)
    joined = [re.findall(r"process (\d) of 2: node (\d)", t) for t in text]  # logged by each worker
    assert all(len(j) == 1 for j in joined), joined
    assert sorted(int(j[0][1]) for j in joined) == [0, 1], "each agent gets its node rank from the rendezvous"
    assert sorted(int(j[0][0]) for j in joined) == [0, 1]
    assert_same_run(one_process, tmp_path / "nodes", damsm_dir)


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


def test_export_run_writes_a_checkpoint_of_a_damsm_or_gan_run(tmp_path: Path, damsm_dir: Path) -> None:
    from click.testing import CliRunner

    from attngan.cli import main

    runner = CliRunner()
    out = runner.invoke(main, ["export-run", str(damsm_dir.parent), "--out", str(tmp_path / "d2"), "--step", "2"])
    assert out.exit_code == 0, out.output
    enc, exported = load_damsm(tmp_path / "d2"), load_damsm(damsm_dir)
    assert enc.metadata["steps"] == 2 and exported.metadata["steps"] == 4
    gan = train_gan(gan_config(tmp_path / "gan", damsm_dir, 2))
    out = runner.invoke(main, ["export-run", str(gan.parent), "--out", str(tmp_path / "m")])
    assert out.exit_code == 0, out.output
    assert load_pretrained(tmp_path / "m").generator.state_dict().keys() == \
        load_pretrained(gan).generator.state_dict().keys()
    missing = runner.invoke(main, ["export-run", str(damsm_dir.parent), "--out", str(tmp_path / "x"), "--step", "3"])
    assert missing.exit_code != 0 and "no checkpoint of step 3" in missing.output
    assert not (tmp_path / "x").exists()


def test_init_from_starts_a_fresh_run_on_another_runs_weights(tmp_path: Path, damsm_dir: Path) -> None:
    """A curriculum's second phase (other data) starts from the first phase's models; the step and
    the optimisers start fresh."""
    from attngan.training.distributed import DistInfo
    from attngan.training.gan import GANTrainer

    train_gan(gan_config(tmp_path / "first", damsm_dir, 2))
    source = ckpt.latest_checkpoint(tmp_path / "first" / "checkpoints")
    assert source is not None
    models = source[1]["models"]
    trainer = GANTrainer(gan_config(tmp_path / "second", damsm_dir, 1,
                                    [f"init_from={tmp_path / 'first'}", "data.extra={size: 64, max_objects: 1}"]),
                         DistInfo())
    trainer.initialise()
    assert trainer.step == 0 and not trainer.opt_g.state
    assert_same(trainer.generator.state_dict(), models["generator"])
    assert_same(trainer.ema.state_dict(), models["ema"])
    for d, saved in zip(trainer.discriminators, models["discriminators"], strict=True):
        assert_same(d.state_dict(), saved)
    first_step = tmp_path / "first" / "checkpoints" / "ckpt-00000001.pt"  # a checkpoint file works too
    cfg = gan_config(tmp_path / "third", damsm_dir, 1, [f"init_from={first_step}"])
    train_gan(cfg)
    third = ckpt.latest_checkpoint(tmp_path / "third" / "checkpoints")
    assert third is not None and third[1]["step"] == 1


def test_init_from_a_model_folder_starts_its_generator_and_fresh_discriminators(tmp_path: Path,
                                                                                damsm_dir: Path) -> None:
    """More steps for a saved model (float16 weights here): the generator and its EMA start from the
    folder's generator, the EMA counts the folder's steps, the discriminators start fresh (the copy
    keeps none); during ``generator_hold`` only the discriminators learn."""
    from attngan.training.distributed import DistInfo
    from attngan.training.gan import GANTrainer

    half = tmp_path / "half"
    save_pretrained(load_pretrained(train_gan(gan_config(tmp_path / "first", damsm_dir, 2))), half,
                    weights_dtype="float16")
    assert not (half / "discriminators.safetensors").exists()  # a new folder gets the inference files only
    saved = {k: v.float() for k, v in load_pretrained(half).generator.state_dict().items()}
    cfg = gan_config(tmp_path / "second", damsm_dir, 2, [f"init_from={half}", "generator_hold=2"])
    trainer = GANTrainer(cfg, DistInfo())
    fresh = [copy.deepcopy(d.state_dict()) for d in trainer.discriminators]
    trainer.initialise()
    assert trainer.step == 0 and int(trainer.ema.num_updates) == 2
    assert_same(trainer.generator.state_dict(), saved)
    assert_same(trainer.ema.shadow.state_dict(), saved)
    for d, f in zip(trainer.discriminators, fresh, strict=True):
        assert_same(d.state_dict(), f)
    exported = load_pretrained(train_gan(cfg)).metadata
    assert exported["steps"] == 4 and exported["started_from"]["model"] == str(half)  # 2 before, 2 here
    assert exported["started_from"]["steps"] == 2 and len(exported["started_from"]["sha256"]) == 16
    assert exported["started_from"]["discriminators"] is False
    found = ckpt.latest_checkpoint(tmp_path / "second" / "checkpoints")
    assert found is not None and found[1]["step"] == 2 and found[1]["started_from"]["steps"] == 2
    models = found[1]["models"]
    generator = models["generator"]
    assert all(torch.equal(generator[k], saved[k]) for k, _ in trainer.generator.named_parameters())  # held
    assert any(not torch.equal(models["discriminators"][0][k], v) for k, v in fresh[0].items())  # learnt


def test_a_model_folder_keeps_the_discriminators_trained_beside_its_generator(
        tmp_path: Path, damsm_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An exported folder keeps its run's discriminators; a half-precision copy given the file starts
    them again; a folder whose generator was replaced since ignores the stale file, saying so."""
    from attngan.training.distributed import DistInfo
    from attngan.training.gan import GANTrainer

    first = train_gan(gan_config(tmp_path / "first", damsm_dir, 2))
    judges = first / "discriminators.safetensors"
    found = ckpt.latest_checkpoint(tmp_path / "first" / "checkpoints")
    assert judges.is_file() and found is not None and found[1]["step"] == 2
    half = tmp_path / "half"
    save_pretrained(load_pretrained(first), half, weights_dtype="float16")
    shutil.copy(judges, half)
    trainer = GANTrainer(gan_config(tmp_path / "second", damsm_dir, 1, [f"init_from={half}"]), DistInfo())
    trainer.initialise()
    assert trainer.started_from is not None and trainer.started_from["discriminators"] is True
    for d, kept in zip(trainer.discriminators, found[1]["models"]["discriminators"], strict=True):
        assert_same(d.state_dict(), kept)
    assert trainer.encoder_d is not None  # the preset's: its head comes back too
    assert_same(trainer.encoder_d.head.state_dict(), found[1]["models"]["encoder_discriminator"]["head"])

    other = train_gan(gan_config(tmp_path / "other", damsm_dir, 1))
    save_pretrained(load_pretrained(other), half)  # new weights; the old discriminators file stays
    fresh = GANTrainer(gan_config(tmp_path / "third", damsm_dir, 1, [f"init_from={half}"]), DistInfo())
    untouched = [copy.deepcopy(d.state_dict()) for d in fresh.discriminators]
    with caplog.at_level("WARNING"):
        fresh.initialise()
    assert "belongs to another generator" in caplog.text
    assert fresh.started_from is not None and fresh.started_from["discriminators"] is False
    for d, f in zip(fresh.discriminators, untouched, strict=True):
        assert_same(d.state_dict(), f)
    (half / "discriminators.safetensors").write_bytes(b"damaged")
    with pytest.raises(ckpt.CheckpointError, match="init_from: .*discriminators.safetensors is truncated or corrupt"):
        train_gan(gan_config(tmp_path / "fourth", damsm_dir, 1, [f"init_from={half}"]))


def test_init_from_errors_name_the_setting(tmp_path: Path, damsm_dir: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="init_from: .*neither a checkpoint file nor a run folder"):
        train_gan(gan_config(tmp_path / "a", damsm_dir, 1, [f"init_from={tmp_path / 'missing'}"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ckpt.CheckpointError, match="init_from: no checkpoint"):
        train_gan(gan_config(tmp_path / "b", damsm_dir, 1, [f"init_from={tmp_path / 'empty'}"]))
    train_gan(gan_config(tmp_path / "narrow", damsm_dir, 1))
    with pytest.raises(ckpt.CheckpointError, match="init_from: .*does not fit this run"):
        train_gan(gan_config(tmp_path / "c", damsm_dir, 1, [f"init_from={tmp_path / 'narrow'}",
                                                             "generator.channels=16"]))
    assert not ckpt.list_checkpoints(tmp_path / "c" / "checkpoints")  # nothing written
    model = tmp_path / "model"
    save_pretrained(load_pretrained(train_gan(gan_config(tmp_path / "d", damsm_dir, 1))), model)
    with pytest.raises(ckpt.CheckpointError, match=r"init_from: .*model's generator does not fit this run: "
                                                   r"channels 8 \(this run 16\)"):
        train_gan(gan_config(tmp_path / "e", damsm_dir, 1, [f"init_from={model}", "generator.channels=16"]))
    (model / "model.safetensors").write_bytes(b"damaged")
    with pytest.raises(ckpt.CheckpointError, match="init_from: .*does not load as a model folder"):
        train_gan(gan_config(tmp_path / "f", damsm_dir, 1, [f"init_from={model}"]))
    assert not ckpt.list_checkpoints(tmp_path / "f" / "checkpoints")
