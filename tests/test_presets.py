"""Every shipped preset resolves and trains one DAMSM step and one GAN step with its own
architecture (only the run length, batch size and data location are overridden), on tiny
synthetic data in each preset's format."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import pytest

from attngan.training.damsm import train_damsm
from attngan.training.gan import train_gan
from attngan.training.options import resolve_config

from .test_data_common import make_cub, write_image, write_pickle

pytestmark = pytest.mark.slow

PRESETS = sorted(p.stem for p in Path(str(resources.files("attngan") / "configs")).glob("*.yaml"))


def _birds(root: Path) -> Path:
    names = {f"00{c}.Class_{c}/bird_{c}_{k}": {"size": (80, 64)} for c in (1, 2) for k in range(2)}
    return make_cub(root, names, {"003.Class_3/bird_3_0": {}})


def _coco(root: Path) -> Path:
    names = {"train": [f"COCO_train2014_00000000000{k}" for k in range(4)], "test": ["COCO_val2014_000000000042"]}
    for split, group in names.items():
        write_pickle(root / split / "filenames.pickle", group)
        for k, name in enumerate(group):
            write_image(root / "images" / f"{name}.jpg", (64, 48), seed=k)
            (root / "text").mkdir(parents=True, exist_ok=True)
            (root / "text" / f"{name}.txt").write_text(
                "\n".join(f"a picture {k} with a dog and a cat number {j}" for j in range(5)) + "\n")
    return root


def _tags(root: Path) -> Path:
    tags = ["blonde hair blue eyes", "red hair green eyes", "black hair red eyes", "blue hair purple eyes"]
    (root / "tags.csv").write_text("".join(f"{k},{tags[k % 4]}\n" for k in range(8)))
    for k in range(8):
        write_image(root / "images" / f"{k}.jpg", (64, 64), seed=k)
    return root


def _folder(root: Path) -> Path:
    for k in range(6):
        write_image(root / f"photo_{k}.jpg", (72, 64), seed=k)
        (root / f"photo_{k}.txt").write_text(f"a photo of a red dog number {k}\nthe dog is small\n")
    return root


DATA = {"cub": _birds, "coco": _coco, "tags": _tags, "folder": _folder}


def _data_overrides(section: dict, tmp: Path) -> list[str]:
    kind = section["data"]["kind"]
    if kind == "shapes":
        return ["data.extra={size: 8}"]
    root = tmp / "data"
    if not root.exists():
        root.mkdir()
        DATA[kind](root)
    extra = [f"data.root={root}"]
    if kind == "folder":
        extra.append("data.extra={test_fraction: 0}")
    if section["data"].get("cache_dir"):
        extra.append(f"data.cache_dir={tmp / 'cache'}")
    return extra


@pytest.fixture
def quick_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """The original's orthogonal initialisation (a QR decomposition per layer) takes tens of seconds
    at the bird and COCO sizes on a CPU; it is tested on its own, so here layers keep torch's."""
    from attngan.training import gan

    monkeypatch.setattr(gan, "init_weights_original", lambda module: None)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_one_step(preset: str, tmp_path: Path, quick_init: None) -> None:
    import yaml

    raw = yaml.safe_load(Path(str(resources.files("attngan") / "configs" / f"{preset}.yaml")).read_text())
    assert set(raw) == {"damsm", "gan"}
    run = ["run.max_steps=1", "run.batch_size=2", "run.log_every=1", "run.time_limit_minutes=0"]
    damsm_cfg = resolve_config("damsm", preset, run + _data_overrides(raw["damsm"], tmp_path)
                               + [f"run.out_dir={tmp_path / 'damsm'}"])
    damsm = train_damsm(damsm_cfg)
    gan_cfg = resolve_config("gan", preset, run + _data_overrides(raw["gan"], tmp_path)
                             + [f"run.out_dir={tmp_path / 'gan'}", f"damsm={damsm}", "run.sample_every=1"])
    own = resolve_config("gan", preset, _data_overrides(raw["gan"], tmp_path))
    assert gan_cfg.generator == own.generator  # the preset's own architecture
    model = train_gan(gan_cfg)
    assert (model / "model.safetensors").exists()
    for folder in ("damsm", "gan"):
        logs = [json.loads(line) for line in (tmp_path / folder / "metrics.jsonl").read_text().splitlines()]
        assert len(logs) == 1 and all(math.isfinite(v) for k, v in logs[0].items() if k.startswith("loss"))
    assert list((tmp_path / "gan" / "samples").glob("step-*.png"))
