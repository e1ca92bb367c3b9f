"""Untrusted files never run code: pickles whose ``__reduce__`` would create a marker file are
refused (in every pickle protocol, bare or hidden inside plain data) by every loader that
reads pickles or ``.pth`` files, with an error naming the file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from attngan.data import CubDataset
from attngan.hub.convert import convert_original
from attngan.training import checkpoint as ckpt
from attngan.untrusted import UnsafePickleError, load_captions_pickle, load_state_dict_file, safe_unpickle

from .test_data_common import make_cub

PROTOCOLS = [0, 2, 4]


class Payload:
    """Unpickling it would run ``os.system`` (protocols 0-2 name ``posix.system`` with GLOBAL,
    protocol 4 with STACK_GLOBAL)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


class EvalPayload(Payload):
    def __reduce__(self):  # noqa: ANN204
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


def _shapes(marker: Path) -> dict[str, object]:
    """The payload bare, and hidden inside data that is otherwise what the loader expects."""
    return {
        "bare": Payload(marker),
        "eval": EvalPayload(marker),
        "in-list": ["001.A/a_1", Payload(marker)],
        "in-captions": [[[1, 2]], [], {0: "<end>", 1: "a", 2: Payload(marker)}, {"a": 1}],
    }


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "a pickle ran code"


def test_the_payload_really_runs_with_plain_pickle(tmp_path: Path) -> None:
    """Guard against a payload that would be harmless anyway."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("shape", ["bare", "eval", "in-list", "in-captions"])
def test_safe_unpickle_refuses(tmp_path: Path, marker: Path, protocol: int, shape: str) -> None:
    path = tmp_path / f"{shape}-{protocol}.pickle"
    path.write_bytes(pickle.dumps(_shapes(marker)[shape], protocol=protocol))
    with pytest.raises(UnsafePickleError, match=rf"{path}: refusing to load (posix\.system|(__builtin__|builtins)\.eval)"):
        safe_unpickle(path)
    with pytest.raises(ValueError, match=str(path)):  # also a ValueError, so the CLI reports it cleanly
        load_captions_pickle(path)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plain_data_still_loads_in_every_protocol(tmp_path: Path, protocol: int) -> None:
    import numpy as np

    data = [[[1, 2, 3]], [[4]], {0: "<end>", 1: "a"}, {"a": 1}, np.arange(3), np.float32(1.5), {1, 2}]
    path = tmp_path / "ok.pickle"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    out = safe_unpickle(path)
    assert out[:4] == data[:4] and list(out[4]) == [0, 1, 2] and out[5] == 1.5 and out[6] == {1, 2}


@pytest.mark.parametrize("which", ["filenames", "class_info", "captions"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cub_loader_pickles(tmp_path: Path, marker: Path, which: str, protocol: int) -> None:
    root = make_cub(tmp_path / "cub", {"001.A/a_1": {}, "002.B/b_1": {}})
    captions = None
    if which == "captions":
        path = captions = tmp_path / "captions.pickle"
    else:
        path = root / "train" / f"{which}.pickle"
    path.write_bytes(pickle.dumps(_shapes(marker)["in-list"], protocol=protocol))
    with pytest.raises(UnsafePickleError, match=rf"{path}: refusing to load posix\.system"):
        CubDataset(root, image_sizes=(16,), captions_pickle=captions)


def _torch_payloads(marker: Path) -> dict[str, object]:
    return {
        "bare": Payload(marker),
        "in-state-dict": {"encoder.weight": torch.ones(2, 2), "evil": Payload(marker)},
        "nested": {"state_dict": {"w": torch.ones(1)}, "extra": [Payload(marker)]},
    }


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-format"])
@pytest.mark.parametrize("shape", ["bare", "in-state-dict", "nested"])
def test_pth_files_are_refused(tmp_path: Path, marker: Path, zipped: bool, shape: str) -> None:
    path = tmp_path / f"{shape}.pth"
    torch.save(_torch_payloads(marker)[shape], path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafePickleError, match=rf"{path}: refusing to load .*GLOBAL posix\.system"):
        load_state_dict_file(path)
    good = _legacy_text_encoder(tmp_path)
    for generator, text_encoder in ((path, good), (good, path)):
        with pytest.raises(ValueError, match=str(path)):
            convert_original(generator, text_encoder, tmp_path / "out", captions_pickle=_vocab_pickle(tmp_path))
    assert not (tmp_path / "out").exists()


def _legacy_text_encoder(tmp_path: Path) -> Path:
    """A genuine original-layout text encoder (2 words) so that conversion reaches the generator."""
    from attngan.config import TextEncoderConfig
    from attngan.hub.legacy import TEXT_ENCODER_RULES, to_legacy
    from attngan.models.text_encoder import TextEncoder

    module = TextEncoder(TextEncoderConfig(vocab_size=2, word_embedding_dim=4, hidden_dim=4))
    path = tmp_path / "text_encoder.pth"
    torch.save(to_legacy(module.state_dict(), TEXT_ENCODER_RULES), path)
    return path


def _vocab_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "vocab.pickle"
    path.write_bytes(pickle.dumps([[], [], {0: "<end>", 1: "a"}, {"<end>": 0, "a": 1}], protocol=2))
    return path


def test_convert_with_a_malicious_captions_pickle(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "captions.pickle"
    path.write_bytes(pickle.dumps(_shapes(marker)["in-captions"], protocol=2))
    with pytest.raises(UnsafePickleError, match=str(path)):
        convert_original(tmp_path / "g.pth", tmp_path / "t.pth", tmp_path / "out", captions_pickle=path)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-format"])
def test_resume_checkpoint_is_refused(tmp_path: Path, marker: Path, zipped: bool) -> None:
    path = tmp_path / "ckpt-00000005.pt"
    good = ckpt.save_checkpoint(tmp_path, 4, {"step": 4})
    state = {"format_version": ckpt.FORMAT_VERSION, "step": 5, "models": {"w": torch.ones(1)},
             "rng": Payload(marker)}
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    message = (rf"refusing to load checkpoint {path}: it holds more than tensors .*GLOBAL posix\.system" if zipped
               else rf"checkpoint {path} is truncated or corrupt \(File is not a zip file\)")
    with pytest.raises(ckpt.CheckpointError, match=message):
        ckpt.load_checkpoint(path)
    found = ckpt.latest_checkpoint(tmp_path)
    assert found is not None and found[0] == good  # passed over, the previous one used
