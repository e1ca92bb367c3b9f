"""Inception networks load from local files in the published formats, and never download.

The real weight files are not available to the tests: randomly initialised networks are
saved in the same formats (torchvision's state dict; the 1008-class FID port that
torch-fidelity reads) and loaded through the same code.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models import inception_v3

from attngan.metrics.inception import (
    TF_INCEPTION_WEIGHTS_FILE,
    TORCHVISION_INCEPTION_WEIGHTS_FILE,
    MissingWeightsError,
    TFInceptionFeatures,
    TorchvisionInceptionFeatures,
    load_inception,
    to_uint8,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("inception")
    torch.manual_seed(0)
    tv = inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(tv.state_dict(), root / TORCHVISION_INCEPTION_WEIGHTS_FILE)
    # the FID port has the same blocks, no auxiliary head and a 1008-class classifier
    fid = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    torch.save(fid.state_dict(), root / TF_INCEPTION_WEIGHTS_FILE)
    return {"torchvision": root / TORCHVISION_INCEPTION_WEIGHTS_FILE, "tf": root / TF_INCEPTION_WEIGHTS_FILE,
            "tv_model": tv.eval()}


@pytest.mark.parametrize(("kind", "needed", "argument", "flag"), [
    ("tf", TF_INCEPTION_WEIGHTS_FILE, "inception_weights", "--inception-weights"),
    ("torchvision", TORCHVISION_INCEPTION_WEIGHTS_FILE, "torchvision_inception_weights",
     "--torchvision-inception-weights"),
])
def test_missing_weights_error_names_file_and_argument(tmp_path, kind, needed, argument, flag) -> None:
    for path in (None, tmp_path / "absent.pth"):
        with pytest.raises(MissingWeightsError) as info:
            load_inception(kind, path)
        message = str(info.value)
        assert needed in message and f"{argument}=" in message and flag in message
        assert "Nothing is downloaded" in message
    assert isinstance(info.value, FileNotFoundError)


def test_weights_of_the_other_kind_are_refused_with_a_hint(weight_files) -> None:
    with pytest.raises(ValueError, match="torchvision_inception_weights"):
        TFInceptionFeatures(weight_files["torchvision"])
    with pytest.raises(ValueError, match="inception_weights"):
        TorchvisionInceptionFeatures(weight_files["tf"])


class Payload:
    def __reduce__(self):
        return (print, ("this would run when unpickled",))


def test_files_that_would_run_code_are_refused(tmp_path) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(2), "x": Payload()}, bad)
    with pytest.raises(ValueError, match="not a plain PyTorch state dict"):
        TFInceptionFeatures(bad)


def test_torchvision_weights_load_and_give_pool_features_and_logits(weight_files) -> None:
    net = load_inception("torchvision", weight_files["torchvision"])
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    pool, logits = net.features_and_logits(images)
    assert pool.shape == (2, 2048) and logits.shape == (2, 1000)
    # the loaded weights are the saved ones: logits equal the reference network's on the same input
    x = torch.nn.functional.interpolate(to_uint8(images).float() / 127.5 - 1, size=(299, 299), mode="bilinear",
                                        align_corners=False)
    with torch.no_grad():
        expected = weight_files["tv_model"](x)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert TORCHVISION_INCEPTION_WEIGHTS_FILE in net.identity and "sha256:" in net.identity
    assert "PyTorch FID" in net.fid_label


def test_fid_weights_load_through_torch_fidelity_without_download(weight_files, monkeypatch) -> None:
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    net = load_inception("tf", weight_files["tf"])
    pool, logits = net.features_and_logits(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(pool).all() and torch.isfinite(logits).all()
    assert "torch-fidelity" in net.identity and TF_INCEPTION_WEIGHTS_FILE in net.identity


def test_to_uint8_rounds_like_an_8_bit_image() -> None:
    x = torch.tensor([-1.0, -0.999, 0.0, 1.0, 2.0])
    assert to_uint8(x.view(1, 1, 1, 5)).flatten().tolist() == [0, 0, 128, 255, 255]
