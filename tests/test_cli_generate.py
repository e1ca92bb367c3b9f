"""``attngan generate`` / ``export-onnx`` / ``show-export``, and pipeline determinism."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from attngan.cli import main
from attngan.inference.export import read_export
from attngan.inference.pipeline import AttnGANPipeline, bundled_model_path
from attngan.viz import to_pil


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# --------------------------------------------------------------------------- determinism
@pytest.fixture(scope="module")
def pipe(tiny_model_dir: Path) -> AttnGANPipeline:
    return AttnGANPipeline.from_pretrained(tiny_model_dir)


def test_same_seed_same_images_across_calls(pipe: AttnGANPipeline) -> None:
    a = pipe(["a red circle", "blue square"], num_images=2, seed=7)
    b = pipe(["a red circle", "blue square"], num_images=2, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.images + a.attention_maps, b.images + b.attention_maps))
    c = pipe(["a red circle", "blue square"], num_images=2, seed=8)
    assert a.seeds == [7, 8, 7, 8] and c.seeds == [8, 9, 8, 9]
    assert torch.equal(a.images[-1][1], c.images[-1][0])  # seed 8 in both
    assert (a.images[-1][0] - c.images[-1][0]).abs().max() > 1e-3  # seeds 7 and 8 differ


def test_same_seed_same_images_across_batches(pipe: AttnGANPipeline) -> None:
    alone = pipe("a red circle", num_images=3, seed=7)
    mixed = pipe(["a small blue square on the left of the image", "a red circle", "green"], num_images=3, seed=7,
                 batch_size=2)
    one_by_one = pipe(["a red circle"] * 3, seed=[7, 8, 9], batch_size=1)
    assert mixed.seeds[3:6] == [7, 8, 9]
    for other in (mixed.images[-1][3:6], one_by_one.images[-1]):
        # batched kernels may round the last float bits differently; the pictures are the same
        assert (alone.images[-1] - other).abs().max() <= 1e-6
        assert np.abs(as_uint8(alone.images[-1]) - as_uint8(other)).max() <= 1


def as_uint8(images: torch.Tensor) -> np.ndarray:
    return np.stack([np.asarray(p) for p in to_pil(images)]).astype(int)


# --------------------------------------------------------------------------- generate
def test_generate_writes_every_stage_and_attention(tiny_model_dir: Path, tmp_path: Path) -> None:
    code, out, err = run("generate", "a small red circle qqq on the left", "-n", "2", "--seed", "3",
                         "--model", str(tiny_model_dir), "--out", str(tmp_path))
    assert code == 0, err
    for seed in (3, 4):
        for size in (16, 32, 64):
            path = tmp_path / f"a-small-red-circle-qqq-on-the-left_{seed}_{size}.png"
            assert path.exists() and Image.open(path).size == (size, size)
            assert str(path) in out
        assert (tmp_path / f"a-small-red-circle-qqq-on-the-left_{seed}_attention.png").exists()
    assert "dropped (unknown): qqq" in out and "seeds 3-4" in out
    assert "warning" in err and "qqq" in err
    again = tmp_path / "again"
    run("generate", "a small red circle qqq on the left", "-n", "2", "--seed", "3", "--model", str(tiny_model_dir),
        "--out", str(again))
    name = "a-small-red-circle-qqq-on-the-left_4_64.png"
    assert (again / name).read_bytes() == (tmp_path / name).read_bytes()


def test_generate_bad_caption_exits_2(tiny_model_dir: Path, tmp_path: Path) -> None:
    code, out, err = run("generate", "zzz qqq", "--model", str(tiny_model_dir), "--out", str(tmp_path))
    assert code == 2
    assert "has no word in the vocabulary" in err and "Traceback" not in out + err
    assert not list(tmp_path.iterdir())
    captions = tmp_path / "captions.txt"
    captions.write_text("a red circle\n\nzzz\n")
    code, _, err = run("generate", "--captions", str(captions), "--model", str(tiny_model_dir), "--out", str(tmp_path))
    assert code == 2 and "captions.txt line 3" in err
    code, _, err = run("generate", "red", "--stages", "4", "--model", str(tiny_model_dir), "--out", str(tmp_path))
    assert code == 2 and "3 stage(s)" in err
    code, _, err = run("generate", "--model", str(tiny_model_dir))
    assert code == 2 and "give a caption" in err


def test_generate_captions_file_with_export(tiny_model_dir: Path, tmp_path: Path) -> None:
    captions = tmp_path / "captions.txt"
    captions.write_text("a red circle\n\n  \nblue square on the top\ngreen triangle\n")
    export = tmp_path / "rows.jsonl"
    code, out, err = run("generate", "--captions", str(captions), "-n", "2", "--seed", "0", "--stages", "2",
                         "--batch-size", "3", "--model", str(tiny_model_dir), "--out", str(tmp_path / "png"),
                         "--export", str(export))
    assert code == 0, err
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert len(pngs) == 3 * 2 * 3  # captions x images x (2 stages + attention)
    assert not any(name.endswith("_64.png") for name in pngs)
    rows = read_export(export)
    assert [r.caption for r in rows] == ["a red circle"] * 2 + ["blue square on the top"] * 2 + ["green triangle"] * 2
    assert [r.seed for r in rows] == [0, 1] * 3 and {r.stage for r in rows} == {32}
    on_disk = Image.open(tmp_path / "png" / "blue-square-on-the-top_1_32.png")
    assert np.array_equal(np.asarray(rows[3].image()), np.asarray(on_disk))
    assert "exported 6 row(s)" in out and "3/3" in err  # the progress bar

    code, out, _ = run("show-export", str(export), "--out", str(tmp_path / "shown"))
    assert code == 0 and "decoded 6 image(s)" in out
    shown = Image.open(tmp_path / "shown" / "00004_blue-square-on-the-top_1_32.png")
    assert np.array_equal(np.asarray(shown), np.asarray(on_disk))


def test_export_onnx_and_onnx_backend(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    code, out, err = run("export-onnx", "--model", str(model), "--out", str(tmp_path / "onnx"))
    assert code == 0, err
    assert {p.name for p in (tmp_path / "onnx").iterdir()} == {"text_encoder.onnx", "generator.onnx", "onnx.json"}
    args = ["a red circle", "--seed", "5", "--model", str(model)]
    assert run("generate", *args, "--out", str(tmp_path / "torch"))[0] == 0
    code, _, err = run("generate", *args, "--out", str(tmp_path / "ort"), "--backend", "onnx",
                       "--onnx-dir", str(tmp_path / "onnx"))
    assert code == 0, err
    assert not (model / "onnx").exists()  # the given folder was used, not the default cache
    a = np.asarray(Image.open(tmp_path / "torch" / "a-red-circle_5_64.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "ort" / "a-red-circle_5_64.png")).astype(int)
    assert np.abs(a - b).max() <= 1
    code, _, err = run("generate", *args, "--backend", "onnx", "--precision", "bf16")
    assert code == 2 and "fp32" in err
    code, _, err = run("generate", *args, "--onnx-dir", str(tmp_path / "onnx"))
    assert code == 2 and "--backend onnx" in err


def test_missing_bundled_model_is_a_clean_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import attngan.inference.pipeline as pipeline_module

    def absent(name: str = "shapes-64") -> Path:
        raise FileNotFoundError(f"the bundled model {name!r} is not installed at {tmp_path / name}")

    monkeypatch.setattr(pipeline_module, "bundled_model_path", absent)
    code, _, err = run("generate", "a red circle", "--out", str(tmp_path))
    assert code == 1 and "--model" in err and "Traceback" not in err


def test_bundled_model_generates_the_readme_example(tmp_path: Path) -> None:
    bundled_model_path()  # shipped inside the package
    code, out, _ = run("generate", "a small red circle on the left", "--seed", "0", "--out", str(tmp_path))
    assert code == 0, out
    for size in (16, 32, 64):
        assert Image.open(tmp_path / f"a-small-red-circle-on-the-left_0_{size}.png").size == (size, size)
    assert (tmp_path / "a-small-red-circle-on-the-left_0_attention.png").exists()
