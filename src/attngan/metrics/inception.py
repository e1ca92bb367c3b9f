"""Inception-v3 features and class logits for FID and IS, from local weight files only.

Three networks, never downloaded:

* ``TFInceptionFeatures``: the TensorFlow Inception (2015-12-05) ported to PyTorch, the
  network of the standard FID (TTUR, pytorch-fid, torch-fidelity) and of the Inception Score
  the papers report on COCO. Built by torch-fidelity's ``FeatureExtractorInceptionV3`` from
  the file ``pt_inception-2015-12-05-6726825d.pth``; the path is always passed, so the
  library never reaches for its download URL.
* ``TorchvisionInceptionFeatures``: torchvision's ImageNet Inception-v3
  (``inception_v3_google-*.pth``) fed exactly as DM-GAN's and DF-GAN's FID code feeds it
  (:func:`pytorch_fid_input`): the "PyTorch FID" of their tables, not the standard FID.
* ``BirdsInceptionFeatures``: an Inception-v3 fine-tuned on CUB birds (StackGAN's, which the
  papers' CUB Inception Scores use), from a PyTorch copy in torchvision's layout.

Weight files are first read with ``torch.load(weights_only=True)``, which refuses files
that would run code when unpickled; only a file that passes is handed to the library.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MissingFileError, SettingError

logger = logging.getLogger(__name__)

TF_INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
TF_INCEPTION_ARGUMENT = "inception_weights"
TF_INCEPTION_FLAG = "--inception-weights"
TORCHVISION_INCEPTION_WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
TORCHVISION_INCEPTION_ARGUMENT = "torchvision_inception_weights"
TORCHVISION_INCEPTION_FLAG = "--torchvision-inception-weights"
BIRDS_INCEPTION_WEIGHTS_FILE = "a birds-fine-tuned Inception-v3 (torchvision layout, fc 50 or 51 classes)"
BIRDS_INCEPTION_ARGUMENT = "birds_inception_weights"
BIRDS_INCEPTION_FLAG = "--birds-inception-weights"
INPUT_SIZE = 299
# ImageNet channel statistics in the input normalisation of the early pytorch-fid that DM-GAN
# and DF-GAN ship (``normalize_input``: x * std / 0.5 + (mean - 0.5) / 0.5 on x in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (file, argument, flag, purpose) of each network's weights
WEIGHT_FILES: dict[str, tuple[str, str, str, str]] = {}


class MissingWeightsError(MissingFileError):
    """A metric needs a local weights file that was not given or does not exist; ``field`` is
    the setting that names it (``inception_weights``, ...)."""


def require_weights_file(path: str | os.PathLike[str] | None, needed_file: str, argument: str, purpose: str) -> Path:
    """Return ``path`` as a Path, or raise :class:`MissingWeightsError` naming the file and the
    setting ``argument`` that passes it."""
    hint = f"{purpose} needs the weights file {needed_file}; pass its local path. Nothing is downloaded."
    if path is None or str(path) == "":
        raise MissingWeightsError(argument, hint)
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(argument, f"{path} does not exist. {hint}")
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


class _InceptionFeatures(nn.Module):
    """What the Inception-v3 extractors share: the wrapped ``net``, its device, and
    :meth:`features` from each one's own ``features_and_logits``."""

    net: nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> pool features ``[N, 2048]``."""
        return self.features_and_logits(images)[0]


class TFInceptionFeatures(_InceptionFeatures):
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
                                    "FID/IS with the standard Inception network")
        state = read_state_dict(path, TF_INCEPTION_ARGUMENT)
        width = _classifier_width(state, path, TF_INCEPTION_ARGUMENT)
        if width != 1008:
            raise SettingError(TF_INCEPTION_ARGUMENT, f"{path} has a {width}-class classifier, not that of "
                               f"{TF_INCEPTION_WEIGHTS_FILE} (1008 classes). torchvision's ImageNet weights go to "
                               f"{{{TORCHVISION_INCEPTION_ARGUMENT}}}.")
        del state
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )
        self.identity = (f"torch-fidelity FeatureExtractorInceptionV3 ('2048', 'logits_unbiased'); input [-1, 1] "
                         f"-> uint8 -> TF-1.x bilinear 299; weights {path.name} sha256:{_file_fingerprint(path)}")
        logger.info("loaded %s", self.identity)

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, 3, H, W]`` in [-1, 1] -> ``(pool3 [N, 2048], logits [N, 1008])`` float32."""
        pool, logits = self.net(to_uint8(images).to(self.device))
        return pool.float(), logits.float()


def pil_resize(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> uint8 ``[N, 3, size, size]``: PIL's bilinear resize of each image,
    as ``torchvision.transforms.Resize((size, size))`` does to a PIL image."""
    from PIL import Image

    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    if images.shape[-2:] == (size, size):
        return images
    arrays = images.permute(0, 2, 3, 1).contiguous().numpy()
    out = [torch.from_numpy(np.array(Image.fromarray(a, "RGB").resize((size, size), Image.Resampling.BILINEAR)))
           for a in arrays]
    return torch.stack(out).permute(0, 3, 1, 2).contiguous()


def pytorch_fid_input(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, 3, 299, 299]`` float32: the network input of DM-GAN's and
    DF-GAN's FID code.

    The images are taken as 8-bit PNGs (:func:`to_uint8`), resized to 299x299 by PIL's bilinear
    filter (their ``transforms.Resize((299, 299))``), scaled to [0, 1] (``ToTensor``) and put
    through the early pytorch-fid ``normalize_input``: channel c becomes
    ``x * std[c] / 0.5 + (mean[c] - 0.5) / 0.5`` with ImageNet's mean and std. (Their network then
    resizes 299 -> 299 with ``align_corners=True``, which changes nothing.)
    """
    x = pil_resize(to_uint8(images.cpu())).float() / 255.0
    scale = torch.tensor([s / 0.5 for s in IMAGENET_STD], dtype=torch.float32).view(1, 3, 1, 1)
    shift = torch.tensor([(m - 0.5) / 0.5 for m in IMAGENET_MEAN], dtype=torch.float32).view(1, 3, 1, 1)
    return x * scale + shift


def _load_torchvision_layout(state: Mapping[str, torch.Tensor], path: Path, argument: str) -> nn.Module:
    """An ``inception_v3`` (no ``transform_input``, no auxiliary head) with ``state`` (read from ``path``)."""
    from torchvision.models import inception_v3

    width = _classifier_width(state, path, argument)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False, num_classes=width)
    if not any(k.startswith("AuxLogits.") for k in state):
        net.AuxLogits = None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} (given as {argument}) does not fit torchvision's inception_v3: "
                         f"{str(exc)[:300]}") from None
    net.AuxLogits = None
    return net.eval().requires_grad_(False)


_BLOCKS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
           "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
           "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


def _pool_and_logits(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The blocks of a torchvision ``inception_v3`` run directly on ``x [N, 3, 299, 299]``:
    ``(average-pooled Mixed_7c [N, 2048], fc logits [N, K])``."""
    for name in _BLOCKS:
        x = getattr(net, name)(x)
    pool = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return pool, net.get_submodule("fc")(pool)


class TorchvisionInceptionFeatures(_InceptionFeatures):
    """torchvision's ImageNet Inception-v3 as DM-GAN / DF-GAN's FID code runs it: pool features
    ``[N, 2048]`` (average-pooled Mixed_7c) and logits ``[N, 1000]``; input :func:`pytorch_fid_input`."""

    name = "inception-v3-torchvision-imagenet"
    fid_label = "PyTorch FID (torchvision ImageNet Inception-v3 fed as DM-GAN/DF-GAN's FID code; not the standard FID)"
    is_label = "IS (torchvision ImageNet Inception-v3, 1000 classes; nobody's published IS)"
    feature_dim = 2048
    num_classes = 1000

    def __init__(self, weights_path: str | os.PathLike[str] | None) -> None:
        super().__init__()
        path = require_weights_file(weights_path, TORCHVISION_INCEPTION_WEIGHTS_FILE,
                                    TORCHVISION_INCEPTION_ARGUMENT,
                                    "PyTorch FID/IS with torchvision's ImageNet Inception-v3")
        state = read_state_dict(path, TORCHVISION_INCEPTION_ARGUMENT)
        width = _classifier_width(state, path, TORCHVISION_INCEPTION_ARGUMENT)
        if width != 1000:
            raise SettingError(TORCHVISION_INCEPTION_ARGUMENT, f"{path} has a {width}-class classifier, not that "
                               f"of torchvision's {TORCHVISION_INCEPTION_WEIGHTS_FILE} (1000 classes). "
                               f"{TF_INCEPTION_WEIGHTS_FILE} goes to {{{TF_INCEPTION_ARGUMENT}}}.")
        self.net = _load_torchvision_layout(state, path, TORCHVISION_INCEPTION_ARGUMENT)
        self.identity = (f"torchvision inception_v3 (avgpool 2048-d, fc 1000) as DM-GAN/DF-GAN's pytorch-fid copy: "
                         f"[-1, 1] -> uint8 -> PIL bilinear 299 -> [0, 1] -> x*std/0.5 + (mean-0.5)/0.5; "
                         f"weights {path.name} sha256:{_file_fingerprint(path)}")
        logger.info("loaded %s", self.identity)

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, 3, H, W]`` in [-1, 1] -> ``(pool [N, 2048], logits [N, 1000])`` float32."""
        return _pool_and_logits(self.net, pytorch_fid_input(images).to(self.device))


class BirdsInceptionFeatures(_InceptionFeatures):
    """An Inception-v3 fine-tuned on CUB birds (StackGAN's, used for the CUB Inception Scores of
    StackGAN, AttnGAN, DM-GAN and DF-GAN), from a PyTorch copy in torchvision's layout.

    Fed as StackGAN's ``inception_score.py`` feeds its TensorFlow original: 8-bit images resized
    to 299x299 bilinearly (PIL, as ``scipy.misc.imresize``), then ``x / 127.5 - 1``. A 51-class
    ``fc`` carries StackGAN's background class first, which is dropped (as there); a 50-class
    one is used whole.
    """

    name = "inception-v3-birds-finetuned"
    is_label = "IS (birds-fine-tuned Inception-v3, as the papers' CUB tables)"
    feature_dim = 2048

    def __init__(self, weights_path: str | os.PathLike[str] | None) -> None:
        super().__init__()
        path = require_weights_file(weights_path, BIRDS_INCEPTION_WEIGHTS_FILE, BIRDS_INCEPTION_ARGUMENT,
                                    "The papers' CUB Inception Score")
        state = read_state_dict(path, BIRDS_INCEPTION_ARGUMENT)
        width = _classifier_width(state, path, BIRDS_INCEPTION_ARGUMENT)
        if width not in (50, 51):
            raise ValueError(f"{path} has a {width}-class classifier; {BIRDS_INCEPTION_ARGUMENT} expects a "
                             "birds-fine-tuned Inception-v3 with 50 classes (or 51 with a background class first)")
        self.net = _load_torchvision_layout(state, path, BIRDS_INCEPTION_ARGUMENT)
        self.drop_first = width == 51
        self.num_classes = 50
        self.identity = (f"birds-fine-tuned inception_v3 (fc {width}{', background dropped' if self.drop_first else ''}"
                         f"): [-1, 1] -> uint8 -> PIL bilinear 299 -> x/127.5 - 1; weights {path.name} "
                         f"sha256:{_file_fingerprint(path)}")
        logger.info("loaded %s", self.identity)

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, 3, H, W]`` in [-1, 1] -> ``(pool [N, 2048], logits [N, 50])`` float32."""
        x = pil_resize(to_uint8(images.cpu())).float() / 127.5 - 1.0
        pool, logits = _pool_and_logits(self.net, x.to(self.device))
        return pool, logits[:, 1:] if self.drop_first else logits


INCEPTION_KINDS: dict[str, type[nn.Module]] = {"tf": TFInceptionFeatures, "torchvision": TorchvisionInceptionFeatures,
                                               "birds": BirdsInceptionFeatures}
WEIGHT_FILES.update({
    "tf": (TF_INCEPTION_WEIGHTS_FILE, TF_INCEPTION_ARGUMENT, TF_INCEPTION_FLAG, "FID/IS with the standard Inception"),
    "torchvision": (TORCHVISION_INCEPTION_WEIGHTS_FILE, TORCHVISION_INCEPTION_ARGUMENT, TORCHVISION_INCEPTION_FLAG,
                    "PyTorch FID/IS with torchvision's ImageNet Inception-v3"),
    "birds": (BIRDS_INCEPTION_WEIGHTS_FILE, BIRDS_INCEPTION_ARGUMENT, BIRDS_INCEPTION_FLAG,
              "The papers' CUB Inception Score"),
})


def load_inception(kind: str, weights_path: str | os.PathLike[str] | None,
                   device: str | torch.device = "cpu") -> nn.Module:
    """``kind`` ``"tf"`` (standard FID/IS), ``"torchvision"`` (PyTorch FID) or ``"birds"`` (the
    papers' CUB IS), on ``device``, eval mode."""
    if kind not in INCEPTION_KINDS:
        raise ValueError(f"inception kind must be one of {', '.join(INCEPTION_KINDS)}, got {kind!r}")
    return INCEPTION_KINDS[kind](weights_path).to(device).eval()
