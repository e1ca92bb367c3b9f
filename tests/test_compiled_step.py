"""``run.speed.compile``: a compiled training step computes the eager step to float rounding, is
built once (no recompilation across steps), takes its kernels from the on-disk cache in a new
process, and falls back to eager with one warning where no compiler works.

The tolerance: inductor sums in another order (BatchNorm statistics, weight gradients over the
batch and positions, softmax denominators) and keeps fused elementwise chains in registers, so
each value differs from eager by a few fp32 roundings (about 1e-7 relative each); through one
forward and backward pass of the tiny model these stay below 1e-5 of the losses and 1e-4 of the
largest gradient of each parameter. The same bounds hold the training step against the original's
(``tests/test_training_step.py``).

The tests that compile are ``slow``: with an empty kernel cache inductor builds a few hundred C++
kernels (minutes on two cores); with the cache filled by an earlier run they take seconds."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from attngan.data import collate
from attngan.training.compiled import compile_cache_dir, compiler_works
from attngan.training.distributed import DistInfo
from attngan.training.gan import GANTrainer
from attngan.training.options import SpeedOptions, resolve_config

from .test_training_step import OVERRIDES, _damsm_folder, _recorder

pytestmark = pytest.mark.usefixtures("one_thread")
LOSS_RTOL, GRAD_RTOL = 1e-5, 1e-4


def _trainer(tmp_path: Path, damsm: Path, compiled: bool, extra: list[str] | None = None) -> GANTrainer:
    cfg = resolve_config("gan", "shapes", OVERRIDES + (extra or []) + [f"damsm={damsm}",
                                                                      f"run.out_dir={tmp_path / str(compiled)}"])
    speed = dataclasses.replace(SpeedOptions(), compile=compiled)
    return GANTrainer(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, speed=speed)), DistInfo())


def _step(trainer: GANTrainer, batch: dict) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    grads: dict[str, torch.Tensor] = {}
    modules = {"g": trainer.generator, **{f"d{i}": d for i, d in enumerate(trainer.discriminators)},
               **({"enc": trainer.encoder_d.judge} if trainer.encoder_d is not None else {})}
    record = _recorder(grads, modules)
    handles = [opt.register_step_pre_hook(record) for opt in trainer.optimizers()]
    logs = trainer.train_step(batch)
    for handle in handles:
        handle.remove()
    return logs, grads


def _assert_close(logs: dict[str, float], grads: dict[str, torch.Tensor], expected_logs: dict[str, float],
                  expected_grads: dict[str, torch.Tensor]) -> None:
    assert logs.keys() == expected_logs.keys()
    for key, value in expected_logs.items():
        assert abs(logs[key] - value) <= LOSS_RTOL * max(1.0, abs(value)), key
    assert grads.keys() == expected_grads.keys() and len(grads) > 20
    for name, g in expected_grads.items():
        assert (grads[name] - g).abs().max() <= GRAD_RTOL * float(g.abs().max()) + 1e-7, name


# counterfactual captions in the discriminators' mismatched term and in the generator's DAMSM term, and a
# DAMSM weight that grows over the first three steps
HARD_NEGATIVES = ["data.counterfactuals=2", "hard_negatives.discriminator=true", "hard_negatives.damsm=true",
                  "damsm_warmup=3",
                  # and the shapes preset's own terms: the encoder discriminator and the mode-seeking pairs
                  "discriminator.batchnorm=false", "encoder_discriminator=1.0", "diversity_weight=1.0"]


# the hard-negatives case (the widest) runs in every suite; the others with `make test-compile`
@pytest.mark.slow
@pytest.mark.parametrize("extra", [pytest.param([], marks=pytest.mark.compile),
                                   pytest.param(["run.speed.checkpoint_last_stage=true"], marks=pytest.mark.compile),
                                   HARD_NEGATIVES],
                         ids=["default", "recomputed", "hard-negatives"])
def test_a_compiled_step_equals_the_eager_step(extra: list[str], tmp_path: Path) -> None:
    """Losses and every gradient of one step as the eager trainer's; the discriminators' learning
    rate is 0, so that the generator's gradients go through the same discriminators (Adam's first
    step moves each weight by about lr times the sign of its gradient, a sign that rounding can
    flip for gradients within rounding of zero). The compared step is the run's second, so that
    within ``damsm_warmup`` the DAMSM weight is neither 0 nor final. Three more steps build nothing
    new (with counterfactual captions, whose count varies by batch, and a DAMSM weight that grows
    each step)."""
    if not compiler_works():
        pytest.skip("torch.compile does not work on this machine")
    from torch._dynamo.utils import counters

    damsm = _damsm_folder(tmp_path)
    eager, compiled = (_trainer(tmp_path, damsm, c, extra + ["optim_d.lr=0.0"]) for c in (False, True))
    for a, b in zip(eager.generator.state_dict().values(), compiled.generator.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same seeded start
    batch = collate([eager.data[i] for i in range(4)])
    hard = extra == HARD_NEGATIVES
    if hard:
        assert int(batch["negative_lengths"].gt(0).sum()) > 0  # counterfactual captions in the step
    eager.step = compiled.step = 1  # a step inside the warm-up: the DAMSM term's gradient counts
    expected_logs, expected_grads = _step(eager, batch)
    if hard:
        assert 0 < eager.damsm_weight() < eager.cfg.loss.weight and expected_logs["loss_damsm_w"] > 0
    logs, grads = _step(compiled, batch)
    _assert_close(logs, grads, expected_logs, expected_grads)
    for (name, a), b in zip(eager.generator.state_dict().items(), compiled.generator.state_dict().values(),
                            strict=True):  # BatchNorm statistics advanced once, as eager
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name
    graphs = counters["stats"]["unique_graphs"]
    for k in range(3):
        compiled.train_step(collate([eager.data[i] for i in range(4 * k + 4, 4 * k + 8)]))
    assert counters["stats"]["unique_graphs"] == graphs, "a later step compiled again"


@pytest.mark.slow
@pytest.mark.compile
def test_a_new_process_takes_the_compiled_kernels_from_the_cache(tmp_path: Path) -> None:
    """What a resumed run or a second run does: it finds every graph of the step in the cache."""
    if not compiler_works():
        pytest.skip("torch.compile does not work on this machine")
    damsm = _damsm_folder(tmp_path)
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        import torch
        torch.set_num_threads(1)
        from pathlib import Path
        from tests.test_compiled_step import _trainer
        from attngan.data import collate
        from attngan.training.compiled import cache_counters
        trainer = _trainer(Path(sys.argv[1]), Path({str(damsm)!r}), True)
        trainer.train_step(collate([trainer.data[i] for i in range(4)]))
        print(json.dumps(cache_counters()))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    found = []
    for run in ("first", "second"):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / run)], env=env, capture_output=True,
                              text=True, timeout=1500)
        assert done.returncode == 0, done.stderr[-3000:]
        found.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert found[1]["fx_hits"] > 0 and found[1]["fx_misses"] == 0, found
    assert found[1]["aot_misses"] == 0, found


def test_the_kernel_cache_lives_in_the_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``$ATTNGAN_CACHE`` (or ``~/.cache/attngan``), also once importing ``torch._dynamo`` has set
    ``TORCHINDUCTOR_CACHE_DIR`` to inductor's default; a folder the user gives there wins."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("ATTNGAN_CACHE", str(tmp_path / "home"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    assert compile_cache_dir() == tmp_path / "home" / "inductor"
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    assert compile_cache_dir() == tmp_path / "home" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"


def test_without_a_compiler_the_step_runs_eagerly_after_one_warning(tmp_path: Path) -> None:
    damsm = _damsm_folder(tmp_path)
    script = textwrap.dedent(f"""
        import logging, math, sys
        logging.basicConfig(level=logging.WARNING)
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from pathlib import Path
        from tests.test_compiled_step import _trainer
        from attngan.data import collate
        trainer = _trainer(Path(sys.argv[1]), Path({str(damsm)!r}), True)
        logs = trainer.train_step(collate([trainer.data[i] for i in range(4)]))
        again = _trainer(Path(sys.argv[1]) / "again", Path({str(damsm)!r}), True)
        print(trainer.generator._compiled_call_impl is None, again.generator._compiled_call_impl is None,
              all(math.isfinite(v) for v in logs.values()))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CXX": str(tmp_path / "no-such-compiler"),
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "empty-cache")}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "True", "True"]  # eager modules, one finite step
    warnings = [line for line in done.stderr.splitlines() if "run.speed.compile" in line]
    assert len(warnings) == 1 and "runs eagerly" in warnings[0], done.stderr[-2000:]
