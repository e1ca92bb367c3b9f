"""Inception-v3 features and class logits for FID and IS, from local weight files only.

Two networks, never downloaded:

* ``TFInceptionFeatures``: the TensorFlow Inception (2015-12-05) ported to PyTorch, the
  network of the standard FID (TTUR, pytorch-fid, torch-fidelity). Built by torch-fidelity's
  ``FeatureExtractorInceptionV3`` from the file ``pt_inception-2015-12-05-6726825d.pth``;
  the path is always passed, so the library never reaches for its download URL.
* ``TorchvisionInceptionFeatures``: torchvision's ImageNet Inception-v3
  (``inception_v3_google-*.pth``), the "PyTorch FID" that DM-GAN and DF-GAN report. Its
  values are not comparable with the standard FID and are labelled as such.

Weight files are first read with ``torch.load(weights_only=True)``, which refuses files
that would run code when unpickled; only a file that passes is handed to the library.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

TF_INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
TF_INCEPTION_ARGUMENT = "inception_weights"
TF_INCEPTION_FLAG = "--inception-weights"
TORCHVISION_INCEPTION_WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
TORCHVISION_INCEPTION_ARGUMENT = "torchvision_inception_weights"
TORCHVISION_INCEPTION_FLAG = "--torchvision-inception-weights"
INPUT_SIZE = 299


class MissingWeightsError(FileNotFoundError):
    """A metric needs a local weights file that was not given or does not exist."""


def require_weights_file(path: str | os.PathLike[str] | None, needed_file: str, argument: str, flag: str,
                         purpose: str) -> Path:
    """Return ``path`` as a Path, or raise :class:`MissingWeightsError` naming the file and how to pass it."""
    hint = (f"{purpose} needs the weights file {needed_file}; pass its local path with {argument}=... "
            f"(command line: {flag} PATH). Nothing is downloaded.")
    if path is None or str(path) == "":
        raise MissingWeightsError(hint)
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"{path} does not exist. {hint}")
    return path


def read_state_dict(path: Path, argument: str) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth`` file, refusing anything but tensors (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler raises many types
        raise ValueError(f"{path} (given as {argument}) is not a plain PyTorch state dict: {str(exc)[:200]}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} (given as {argument}) does not hold a mapping of tensors")
    return dict(state)


def _classifier_width(state: Mapping[str, torch.Tensor], path: Path, argument: str) -> int:
    weight = state.get("fc.weight")
    if weight is None or weight.dim() != 2 or weight.shape[1] != 2048 or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise ValueError(f"{path} (given as {argument}) is not an Inception-v3 state dict (no Mixed_7c / fc [K, 2048])")
    return int(weight.shape[0])


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` floats in [-1, 1] -> uint8 in [0, 255], rounded as an 8-bit PNG stores them."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _file_fingerprint(path: Path) -> str:
    from ..hub import file_sha256

    return file_sha256(path)[:16]


class TFInceptionFeatures(nn.Module):
    """Standard FID/IS network via torch-fidelity: pool3 features ``[N, 2048]``, logits ``[N, 1008]``.

    Images ``[N, 3, H, W]`` in [-1, 1] are quantised to uint8 and resized to 299x299 with
    torch-fidelity's TensorFlow-1.x-compatible bilinear resize. The IS logits are
    torch-fidelity's ``logits_unbiased`` (pool3 times the classifier weights, no bias), as in
    the original Inception Score code.
    """

    name = "inception-v3-tf-2015-12-05"
    fid_label = "FID (TF Inception-v3 2015-12-05, pool3 2048-d)"
    is_label = "IS (TF Inception-v3 2015-12-05, 1008 classes)"
    feature_dim = 2048
    num_classes = 1008

    def __init__(self, weights_path: str | os.PathLike[str] | None) -> None:
        super().__init__()
        path = require_weights_file(weights_path, TF_INCEPTION_WEIGHTS_FILE, TF_INCEPTION_ARGUMENT,
                                    TF_INCEPTION_FLAG, "FID/IS with the standard Inception network")
        state = read_state_dict(path, TF_INCEPTION_ARGUMENT)
        width = _classifier_width(state, path, TF_INCEPTION_ARGUMENT)
        if width != 1008:
            raise ValueError(f"{path} has a {width}-class classifier; {TF_INCEPTION_ARGUMENT} expects "
                             f"{TF_INCEPTION_WEIGHTS_FILE} (1008 classes). torchvision's ImageNet weights go to "
                             f"{TORCHVISION_INCEPTION_ARGUMENT} ({TORCHVISION_INCEPTION_FLAG}).")
        del state
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )
        self.identity = (f"torch-fidelity FeatureExtractorInceptionV3 ('2048', 'logits_unbiased'); input [-1, 1] "
                         f"-> uint8 -> TF-1.x bilinear 299; weights {path.name} sha256:{_file_fingerprint(path)}")
        logger.info("loaded %s", self.identity)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, 3, H, W]`` in [-1, 1] -> ``(pool3 [N, 2048], logits [N, 1008])`` float32."""
        pool, logits = self.net(to_uint8(images).to(self.device))
        return pool.float(), logits.float()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> pool3 features ``[N, 2048]``."""
        return self.features_and_logits(images)[0]


class TorchvisionInceptionFeatures(nn.Module):
    """torchvision's ImageNet Inception-v3: pool features ``[N, 2048]``, logits ``[N, 1000]``.

    As the early pytorch-fid that DM-GAN/DF-GAN used: images quantised to 8 bits, scaled to
    [-1, 1], bilinearly resized to 299x299 and run through the blocks directly (no
    ``transform_input``); features are the average-pooled Mixed_7c output.
    """

    name = "inception-v3-torchvision-imagenet"
    fid_label = "PyTorch FID (torchvision ImageNet Inception-v3, as DM-GAN/DF-GAN report; not the standard FID)"
    is_label = "IS (torchvision ImageNet Inception-v3, 1000 classes; not the standard IS)"
    feature_dim = 2048
    num_classes = 1000
    _blocks = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
               "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
               "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self, weights_path: str | os.PathLike[str] | None) -> None:
        super().__init__()
        path = require_weights_file(weights_path, TORCHVISION_INCEPTION_WEIGHTS_FILE,
                                    TORCHVISION_INCEPTION_ARGUMENT, TORCHVISION_INCEPTION_FLAG,
                                    "PyTorch FID/IS with torchvision's ImageNet Inception-v3")
        state = read_state_dict(path, TORCHVISION_INCEPTION_ARGUMENT)
        width = _classifier_width(state, path, TORCHVISION_INCEPTION_ARGUMENT)
        if width != 1000:
            raise ValueError(f"{path} has a {width}-class classifier; {TORCHVISION_INCEPTION_ARGUMENT} expects "
                             f"torchvision's {TORCHVISION_INCEPTION_WEIGHTS_FILE} (1000 classes). "
                             f"{TF_INCEPTION_WEIGHTS_FILE} goes to {TF_INCEPTION_ARGUMENT} ({TF_INCEPTION_FLAG}).")
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        if not any(k.startswith("AuxLogits.") for k in state):
            net.AuxLogits = None
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path} does not fit torchvision's inception_v3: {str(exc)[:300]}") from None
        net.AuxLogits = None
        self.net = net.eval().requires_grad_(False)
        self.identity = (f"torchvision inception_v3 (avgpool 2048-d, fc 1000); input [-1, 1] -> uint8 -> [-1, 1] "
                         f"-> bilinear 299, no transform_input; weights {path.name} sha256:{_file_fingerprint(path)}")
        logger.info("loaded %s", self.identity)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, 3, H, W]`` in [-1, 1] -> ``(pool [N, 2048], logits [N, 1000])`` float32."""
        x = to_uint8(images).to(self.device).float() / 127.5 - 1
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        for name in self._blocks:
            x = getattr(self.net, name)(x)
        pool = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return pool, self.net.fc(pool)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> pool features ``[N, 2048]``."""
        return self.features_and_logits(images)[0]


def load_inception(kind: str, weights_path: str | os.PathLike[str] | None,
                   device: str | torch.device = "cpu") -> TFInceptionFeatures | TorchvisionInceptionFeatures:
    """``kind`` ``"tf"`` (standard FID/IS) or ``"torchvision"`` (PyTorch FID), on ``device``, eval mode."""
    if kind == "tf":
        net: TFInceptionFeatures | TorchvisionInceptionFeatures = TFInceptionFeatures(weights_path)
    elif kind == "torchvision":
        net = TorchvisionInceptionFeatures(weights_path)
    else:
        raise ValueError(f"inception kind must be 'tf' or 'torchvision', got {kind!r}")
    return net.to(device).eval()
