"""``attngan train --data-root DIR``: a folder of captioned images (generated here: shapes scenes
with their captions) to a model in one command -- the data check first, then DAMSM, then the GAN,
one folder, one progress bar; Ctrl-C and ``--resume`` in either phase; ``generate`` loads the result."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from attngan.cli import main
from attngan.data import DataSpec, ShapesDataset
from attngan.data.check import check_training_data
from attngan.training import checkpoint as ckpt
from attngan.training.options import ConfigError, resolve_data_run, route_overrides

from .test_reliability_training import assert_same_models, final_models
from .training_driver import Driven

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

TINY_PRESET = {
    "damsm": {"text_encoder": {"word_embedding_dim": 16, "hidden_dim": 16, "max_words": 12, "dropout": 0.0},
              "image_encoder": {"kind": "light", "embedding_dim": 16, "image_size": 32, "light_channels": 8},
              "data": {"kind": "folder", "extra": {"test_fraction": 0.0}},
              "run": {"batch_size": 4, "max_steps": 3, "log_every": 1, "checkpoint_every": 1, "precision": "fp32",
                      "deterministic": True, "threads": 1}},
    "gan": {"name": "tiny-folder",
            "generator": {"channels": 8, "condition_dim": 8, "noise_dim": 8, "num_stages": 2, "first_stage_size": 16},
            "discriminator": {"channels": 8},
            "data": {"kind": "folder", "extra": {"test_fraction": 0.0}},
            "run": {"batch_size": 4, "max_steps": 3, "log_every": 1, "checkpoint_every": 1, "sample_every": 0,
                    "precision": "fp32", "deterministic": True, "threads": 1}},
}


def make_folder(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` shapes scenes as ``scene_K.png`` with ``scene_K.txt`` (three captions a line each)."""
    data = ShapesDataset("train", image_sizes=(64,), size=count, seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        data.render(data.scene(k)).save(root / f"scene_{k:02d}.png")
        (root / f"scene_{k:02d}.txt").write_text("\n".join(data.captions(k)[:3]) + "\n")
    return root


@pytest.fixture(scope="module")
def preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("preset") / "tiny_folder.yaml"
    path.write_text(yaml.safe_dump(TINY_PRESET))
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data") / "my_images", 12)


def train_args(images: Path, preset: Path, out: Path, damsm_steps: int, gan_steps: int) -> list[str]:
    return ["train", "--data-root", str(images), "--preset", str(preset), "--out", str(out),
            "--set", f"damsm.run.max_steps={damsm_steps}", "--set", f"gan.run.max_steps={gan_steps}"]


# --------------------------------------------------------------------------- configuration and data check


def test_overrides_go_to_the_phases_that_have_them() -> None:
    routed = route_overrides(["run.threads=1", "generator.channels=8", "damsm.run.max_steps=5",
                              "gan.run.max_steps=7", "text_encoder.hidden_dim=32", "damsm=/x"])
    assert routed == {"damsm": ["run.threads=1", "run.max_steps=5", "text_encoder.hidden_dim=32"],
                      "gan": ["run.threads=1", "generator.channels=8", "run.max_steps=7", "damsm=/x"]}
    with pytest.raises(ConfigError, match="no section has a field 'nonsense'"):
        route_overrides(["nonsense.x=1"])


def test_presets_for_a_cpu_and_a_gpu(tmp_path: Path) -> None:
    cpu_damsm, cpu = resolve_data_run("folder_cpu", str(tmp_path), str(tmp_path / "run"))
    gpu_damsm, gpu = resolve_data_run("folder_gpu", str(tmp_path), str(tmp_path / "run"))
    assert cpu.generator.image_sizes == (16, 32, 64) and gpu.generator.image_sizes == (64, 128, 256)
    anime_generator = yaml.safe_load((Path(__file__).parents[1] / "src/attngan/configs/anime_faces.yaml")
                                     .read_text())["gan"]["generator"]
    assert all(getattr(cpu.generator, k) == v for k, v in anime_generator.items())  # the anime preset's architecture
    assert cpu_damsm is not None and gpu_damsm is not None
    for damsm, gan in ((cpu_damsm, cpu), (gpu_damsm, gpu)):
        assert damsm.data == gan.data and gan.data.kind == "folder" and gan.data.root == str(tmp_path)
        assert damsm.run.out_dir == gan.run.out_dir == str(tmp_path / "run")
        assert gan.damsm == str(tmp_path / "run" / "damsm")
    named, gan = resolve_data_run("folder_cpu", str(tmp_path), str(tmp_path / "run"), damsm="enc")
    assert named is None and gan.damsm == "enc"  # encoders named: no DAMSM phase


def test_data_check_names_every_problem_at_once(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "bad", 5)
    (root / "scene_01.txt").unlink()  # no captions
    (root / "scene_02.png").write_bytes(b"")  # empty
    (root / "scene_03.png").write_bytes(b"this is not a png")  # unreadable
    (root / "scene_04.txt").write_text("zebra\n")  # words seen once
    report = check_training_data(DataSpec("folder", str(root), extra={"test_fraction": 0.0}), 32, 12, min_images=4)
    text = "\n".join(report.lines())
    assert not report.ok and len(report.problems) == 4, text
    assert f"1 caption file(s) are missing (name.txt beside name.jpg, one caption a line): {root}/scene_01.txt" in text
    assert f"1 image file(s) are empty (0 bytes): {root}/scene_02.png" in text
    assert f"1 image file(s) cannot be read: {root}/scene_03.png (UnidentifiedImageError)" in text
    assert "3 captioned training image(s); one batch of this run needs 4 (run.batch_size)" in text
    assert "pass --set data.skip_bad=true" in text and "words of the training captions occur fewer than 3" in text
    lenient = check_training_data(DataSpec("folder", str(root), skip_bad=True, extra={"test_fraction": 0.0}), 32, 12,
                                  min_images=2)
    assert lenient.ok and lenient.train_images == 2, lenient.lines()  # the unreadable image is left out too
    assert sum("skipped (data.skip_bad)" in w for w in lenient.warnings) == 3, lenient.lines()


def test_bad_data_is_reported_before_anything_is_written(tmp_path: Path, preset: Path) -> None:
    root = make_folder(tmp_path / "few", 3)
    (root / "scene_00.txt").unlink()
    out = tmp_path / "run"
    result = CliRunner().invoke(main, train_args(root, preset, out, 2, 2))
    assert result.exit_code == 1, result.output
    assert "problem: 1 caption file(s) are missing" in result.output
    assert "problem: 2 captioned training image(s); one batch of this run needs 4" in result.output
    assert "--data-root: 2 problem(s) with the data; nothing was trained" in result.output and not out.exists()


# --------------------------------------------------------------------------- the run


def test_one_command_trains_damsm_then_the_gan_and_generate_loads_it(tmp_path: Path, images: Path,
                                                                      preset: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, train_args(images, preset, out, 2, 3), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"preset {preset}; run folder {out}; DAMSM (2 steps), then GAN (3 steps)" in result.output
    assert "12 captioned training images (36 captions" in result.output
    state = json.loads((out / "run.json").read_text())
    assert state["phases"]["damsm"]["done"] and state["phases"]["damsm"]["step"] == 2
    assert state["phases"]["gan"]["done"] and state["phases"]["gan"]["step"] == 3
    assert state["data"]["root"] == str(images.resolve()) and state["preset"] == str(preset)
    assert [json.loads(x)["step"] for x in (out / "damsm_metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert (out / "damsm" / "vocab.json").exists() and (out / "model" / "model.safetensors").exists()
    generated = CliRunner().invoke(main, ["generate", "a big red circle on the left", "--model", str(out / "model"),
                                          "--seed", "0", "--out", str(tmp_path / "png")])
    assert generated.exit_code == 0, generated.output
    assert (tmp_path / "png" / "a-big-red-circle-on-the-left_0_32.png").exists()
    again = CliRunner().invoke(main, train_args(images, preset, out, 2, 3))
    assert again.exit_code == 1 and "already holds a run (run.json); pass --resume" in again.output


@pytest.mark.slow
def test_ctrl_c_then_resume_in_each_phase_ends_on_the_uninterrupted_weights(tmp_path: Path, images: Path,
                                                                             preset: Path) -> None:
    ref = Driven([], train_args(images, preset, tmp_path / "ref", 4, 6))
    out = tmp_path / "run"
    args = train_args(images, preset, out, 4, 6)

    def stop_at(hold: int, resume: bool) -> Driven:
        run = Driven(["--hold", str(hold)], [*args, *(["--resume"] if resume else [])])
        run.wait_for(rf"HOLDING rank=0 step={hold}")
        run.proc.send_signal(signal.SIGINT)
        assert run.finish() == 0, run.output[-3000:]
        return run

    first = stop_at(2, resume=False)  # in the DAMSM phase (4 steps)
    assert "stopped in the damsm phase at step 2; the same command with --resume continues" in first.output
    state: dict[str, Any] = json.loads((out / "run.json").read_text())
    assert state["phases"] == {"damsm": {"done": False, "step": 2, "ended_by": "signal",
                                         "folder": str(out / "damsm")}}
    assert not ckpt.list_checkpoints(out / "checkpoints")
    second = stop_at(5, resume=True)  # resumes DAMSM at 2, finishes it, stops the GAN at 5
    assert [m["step"] for m in second.markers("RESUMED")] == ["2"]
    assert "stopped in the gan phase at step 5" in second.output
    last = Driven([], [*args, "--resume"])
    assert last.finish() == 0, last.output[-3000:]
    assert [m["step"] for m in last.markers("RESUMED")] == ["5"]  # the DAMSM phase is not repeated
    assert f"exported {out / 'model'}" in last.output
    assert ref.finish() == 0, ref.output[-3000:]
    assert_same_models(final_models(tmp_path / "ref"), final_models(out))
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
