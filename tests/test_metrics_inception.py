"""Inception networks load from local files in the published formats, and never download.

The real weight files are not available to the tests: randomly initialised networks are
saved in the same formats (torchvision's state dict; the 1008-class FID port that
torch-fidelity reads) and loaded through the same code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models import inception_v3

from attngan.cli.flags import flag as flag_of
from attngan.metrics.inception import (
    TF_INCEPTION_WEIGHTS_FILE,
    TORCHVISION_INCEPTION_WEIGHTS_FILE,
    MissingWeightsError,
    TFInceptionFeatures,
    TorchvisionInceptionFeatures,
    load_inception,
    pytorch_fid_input,
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
def test_missing_weights_error_names_file_and_setting(tmp_path, kind, needed, argument, flag) -> None:
    for path in (None, tmp_path / "absent.pth"):
        with pytest.raises(MissingWeightsError) as info:
            load_inception(kind, path)
        message = str(info.value)  # the library names the setting; the command line, the flag
        assert needed in message and info.value.field == argument and message.startswith(f"{argument}: ")
        assert "Nothing is downloaded" in message
        assert info.value.render(flag_of).startswith(f"{flag}: ")
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


def dmgan_fid_input(images: torch.Tensor, folder) -> torch.Tensor:
    """DM-GAN's / DF-GAN's FID input, written from their description, on the PNG files ``attngan
    generate`` writes: each file read by PIL, ``torchvision.transforms.Resize((299, 299))`` and
    ``ToTensor``, their network's ``F.upsample(..., align_corners=True)`` to 299 and the early
    pytorch-fid ``normalize_input``."""
    from PIL import Image
    from torchvision import transforms

    from attngan.viz import to_pil

    transform = transforms.Compose([transforms.Resize((299, 299)), transforms.ToTensor()])
    batch = []
    for i, picture in enumerate(to_pil(images)):
        picture.save(folder / f"{i}.png")
        batch.append(transform(Image.open(folder / f"{i}.png").convert("RGB")))
    x = torch.nn.functional.interpolate(torch.stack(batch), size=(299, 299), mode="bilinear", align_corners=True)
    x = x.clone()
    for c, (mean, std) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        x[:, c] = x[:, c] * (std / 0.5) + (mean - 0.5) / 0.5
    return x


def dmgan_blocks(tv) -> torch.nn.Sequential:
    """Their InceptionV3's four blocks over torchvision's modules, up to the final average pool."""
    nn = torch.nn
    return nn.Sequential(
        tv.Conv2d_1a_3x3, tv.Conv2d_2a_3x3, tv.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        tv.Conv2d_3b_1x1, tv.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        tv.Mixed_5b, tv.Mixed_5c, tv.Mixed_5d, tv.Mixed_6a, tv.Mixed_6b, tv.Mixed_6c, tv.Mixed_6d, tv.Mixed_6e,
        tv.Mixed_7a, tv.Mixed_7b, tv.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1))).eval()


def test_pytorch_fid_is_fed_exactly_as_dm_gan_and_df_gan_feed_it(weight_files, tmp_path) -> None:
    g = torch.Generator().manual_seed(7)
    net = load_inception("torchvision", weight_files["torchvision"])
    for size in (64, 256):  # the sizes AttnGAN-family models draw; 256 is what DM-GAN's tables score
        images = (torch.rand(3, 3, size, size, generator=g) * 2 - 1)
        images[0] = torch.linspace(-1, 1, size).view(1, 1, size)  # smooth ramps resample visibly
        folder = tmp_path / str(size)
        folder.mkdir()
        expected = dmgan_fid_input(images, folder)
        torch.testing.assert_close(pytorch_fid_input(images), expected, rtol=0, atol=1e-6)
        with torch.no_grad():
            reference = dmgan_blocks(weight_files["tv_model"])(expected).flatten(1)
        pool, logits = net.features_and_logits(images)
        torch.testing.assert_close(pool, reference, rtol=1e-4, atol=1e-5)
        assert logits.shape == (3, 1000)
    assert TORCHVISION_INCEPTION_WEIGHTS_FILE in net.identity and "sha256:" in net.identity
    assert "PyTorch FID" in net.fid_label and "DM-GAN" in net.fid_label


def test_birds_inception_drops_the_background_class_and_reads_minus_one_to_one(tmp_path) -> None:
    from PIL import Image

    torch.manual_seed(1)
    birds = inception_v3(weights=None, aux_logits=False, num_classes=51, init_weights=False).eval()
    path = tmp_path / "birds.pth"
    torch.save(birds.state_dict(), path)
    net = load_inception("birds", path)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    pool, logits = net.features_and_logits(images)
    arrays = to_uint8(images).permute(0, 2, 3, 1).numpy()
    x = torch.stack([torch.from_numpy(np.array(Image.fromarray(a).resize((299, 299), Image.BILINEAR)))
                     for a in arrays]).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        expected = birds(x)
    assert logits.shape == (2, 50) and pool.shape == (2, 2048)
    torch.testing.assert_close(logits, expected[:, 1:], rtol=1e-4, atol=1e-4)
    torch.save(inception_v3(weights=None, aux_logits=False, num_classes=10, init_weights=False).state_dict(),
               tmp_path / "ten.pth")
    with pytest.raises(ValueError, match="50 classes"):
        load_inception("birds", tmp_path / "ten.pth")


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
