"""CLIP image and text embeddings for the CLIP metrics (``clip_score``, ``clip_r_precision``), from
a local weights file only.

The network is built by ``open_clip`` (the ``clip`` extra: ``pip install 'attngan[clip]'``) from
its bundled architecture description (``clip_model``, ``--clip-model``, default ``ViT-B-32``)
with random weights -- ``pretrained=None``, no tower weights, nothing fetched -- and then given
the weights of the file named by ``clip_weights`` (``--clip-weights``):

* OpenAI's release file ``ViT-B-32.pt`` (sha256 :data:`OPENAI_VIT_B32_SHA256`, the file
  ``clip.load("ViT-B/32")`` fetches and verifies, and the one GALIP's and TISE's evaluation code
  loads): a TorchScript archive, read with ``torch.jit.load`` (which deserialises TorchScript,
  never Python pickles) for its tensors only. OpenAI's networks use QuickGELU, so an archive is
  always run with it;
* a state dict (``.pt`` / ``.bin``, read with ``torch.load(weights_only=True)``) or a
  ``.safetensors`` file in open_clip's layout. A copy of OpenAI's weights in this form takes
  ``clip_model`` ``ViT-B-32-quickgelu`` (the file cannot say which activation it was trained with).

Images ``[N, 3, S, S]`` in [-1, 1] are fed as CLIP's own preprocessing feeds a PNG: quantised to
8 bits, resized with PIL's bicubic filter to the model's input size (224) and normalised with
CLIP's mean and std (TISE and CLIPScore feed them so). :meth:`CLIPFeatures.galip_features`
feeds them as GALIP's evaluation code does instead (see :func:`galip_input`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SettingError
from .inception import WEIGHT_FILES, pil_resize, read_state_dict, require_weights_file, to_uint8

if TYPE_CHECKING:
    from .engine import EvalContext, SampleBatch

logger = logging.getLogger(__name__)

DEFAULT_CLIP_MODEL = "ViT-B-32"
OPENAI_VIT_B32_FILE = "ViT-B-32.pt"
OPENAI_VIT_B32_SHA256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
CLIP_ARGUMENT = "clip_weights"
CLIP_MODEL_ARGUMENT = "clip_model"
CLIP_FLAG = "--clip-weights"
CLIP_PURPOSE = "The CLIP metrics (clip_score, clip_r_precision)"
WEIGHT_FILES["clip"] = (f"{OPENAI_VIT_B32_FILE}, OpenAI's CLIP ViT-B/32 (sha256 {OPENAI_VIT_B32_SHA256[:12]}...)",
                        CLIP_ARGUMENT, CLIP_FLAG, CLIP_PURPOSE)
_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size")  # non-weights in OpenAI's archives


class CLIPNetwork(Protocol):
    """What is used of an open_clip model (``open_clip.CLIP``): its two towers and, to load the
    weights of a file into it, its state."""

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` normalised images -> image embeddings ``[N, D]`` (not normalised)."""
        ...

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` token ids of CLIP's tokenizer -> text embeddings ``[N, D]`` (not normalised)."""
        ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def named_buffers(self) -> Iterator[tuple[str, torch.Tensor]]: ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any: ...

    def to(self, device: str | torch.device) -> Any: ...


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError:
        raise ImportError("the CLIP metrics need open_clip: pip install 'attngan[clip]' (open_clip_torch)") from None
    return open_clip


def is_torchscript_archive(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with compiled ``code/``), as OpenAI's files are."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("constants.pkl") for name in archive.namelist())


def read_clip_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, format)`` of a CLIP weights file; format ``torchscript`` (OpenAI's release),
    ``safetensors`` or ``state_dict``. Errors are :class:`~attngan.errors.SettingError` s of
    ``clip_weights`` naming the file."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state, kind = load_file(str(path)), "safetensors"
        except (SafetensorError, OSError, ValueError) as exc:
            raise SettingError(CLIP_ARGUMENT, f"{path} is not a readable safetensors file: {str(exc)[:200]}") from None
    elif is_torchscript_archive(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as exc:
            raise SettingError(CLIP_ARGUMENT, f"{path} is not a loadable TorchScript archive: "
                                              f"{str(exc)[:200]}") from None
        state = {k: v for k, v in module.state_dict().items() if k not in _ARCHIVE_EXTRAS}
        kind = "torchscript"
    else:
        state, kind = read_state_dict(path, CLIP_ARGUMENT), "state_dict"
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: v.detach().float() if v.is_floating_point() else v for k, v in state.items()}, kind


@contextlib.contextmanager
def _quiet_random_init() -> Iterator[None]:
    """open_clip warns on the root logger that a model built with ``pretrained=None`` is random;
    here the weights come right after, so that warning is dropped."""

    def keep(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def build_clip_model(name: str, quick_gelu: bool = False) -> CLIPNetwork:
    """open_clip's architecture ``name`` with random weights (nothing is downloaded); eval mode, fp32.

    Refuses (a :class:`~attngan.errors.SettingError` of ``clip_model``) names with a ``hf-hub:`` /
    ``local-dir:`` scheme and architectures whose text tower or tokenizer comes from the Hugging
    Face Hub.
    """
    open_clip = _open_clip()
    known = open_clip.list_models()
    if ":" in name or name not in known:
        raise SettingError(CLIP_MODEL_ARGUMENT, f"{name!r} is not one of open_clip's built-in architectures "
                                                f"(e.g. {DEFAULT_CLIP_MODEL}, {DEFAULT_CLIP_MODEL}-quickgelu, ViT-B-16, "
                                                "ViT-L-14)")
    config = open_clip.get_model_config(name) or {}
    if "hf_model_name" in config.get("text_cfg", {}) or "hf_tokenizer_name" in config.get("text_cfg", {}):
        raise SettingError(CLIP_MODEL_ARGUMENT, f"{name}: its text tower or tokenizer is fetched from the Hugging "
                                                "Face Hub; choose an architecture built from open_clip's own "
                                                f"description (e.g. {DEFAULT_CLIP_MODEL})")
    with _quiet_random_init():
        model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu, pretrained_image=False,
                                       pretrained_text=False)
    return model.eval().requires_grad_(False)


def galip_input(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, 3, size, size]``: the CLIP input of GALIP's evaluation
    code (``transf_to_CLIP_input``): the float images (not quantised) mapped to [0, 1], resized by
    nearest neighbour (``F.interpolate``'s default), then ``((x + 1) / 2 - mean) / std`` -- a second
    shift that puts every pixel in [0.5, 1] before CLIP's normalisation. Reproduced as written, so
    that a figure computed so compares with GALIP's tables."""
    x = F.interpolate(images.float().clamp(-1, 1) * 0.5 + 0.5, size=(size, size))
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x + 1) * 0.5 - m) / s


class CLIPFeatures:
    """Image and text embeddings ``[N, D]`` (not normalised) of an open_clip model.

    ``identity`` names the architecture, the activation, the input pipeline and the weights file
    with its sha256 (recorded with every CLIP metric); ``weights_sha256`` is the full hash.
    """

    name = "clip"

    def __init__(self, model: CLIPNetwork, tokenizer: Any, model_name: str, quick_gelu: bool, weights: Path,
                 weights_sha256: str, weights_format: str) -> None:
        open_clip = _open_clip()
        self.net, self.tokenizer, self.model_name = model, tokenizer, model_name
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        if sizes[0] != sizes[1]:
            raise SettingError(CLIP_MODEL_ARGUMENT, f"{model_name}: non-square inputs {sizes} are not supported")
        self.image_size = int(sizes[0])
        self.mean, self.std = tuple(cfg.get("mean")), tuple(cfg.get("std"))
        self.resample = str(cfg.get("interpolation", "bicubic"))
        self.weights_sha256, self.weights_format = weights_sha256, weights_format
        openai = " = OpenAI's ViT-B-32.pt" if weights_sha256 == OPENAI_VIT_B32_SHA256 else ""
        activation = "QuickGELU" if quick_gelu else "GELU"
        self.identity = (f"open_clip {model_name} ({activation}); image input [-1, 1] -> uint8 -> PIL {self.resample} "
                         f"{self.image_size} -> CLIP mean/std; weights {weights.name} ({weights_format}) "
                         f"sha256:{weights_sha256[:16]}{openai}")

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> CLIPFeatures:
        self.net.to(device)
        return self

    def image_input(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> ``[N, 3, S, S]``: 8 bits, PIL resize to the input size, CLIP's
        normalisation (CLIP's preprocessing of a square PNG)."""
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"expected square images [N, 3, H, H], got {tuple(images.shape)}")
        x = pil_resize(to_uint8(images.cpu()), self.image_size, self.resample).float() / 255.0
        m = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return (x - m) / s

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, H]`` in [-1, 1] -> image embeddings ``[N, D]`` float32 (:meth:`image_input`)."""
        return self.net.encode_image(self.image_input(images).to(self.device)).float()

    @torch.no_grad()
    def galip_features(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``[N, D]`` of the images fed as GALIP's evaluation code feeds them (:func:`galip_input`)."""
        return self.net.encode_image(galip_input(images.to(self.device), self.image_size, self.mean, self.std)).float()

    @torch.no_grad()
    def text_features(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Text embeddings ``[N, D]`` float32 of ``texts`` (CLIP's tokenizer: lower-cased, cut to the
        context length)."""
        parts = [self.net.encode_text(self.tokenizer(list(texts[a:a + batch_size])).to(self.device)).float()
                 for a in range(0, len(texts), batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, 0)


def load_clip(model_name: str, weights_path: str | os.PathLike[str] | None,
              device: str | torch.device = "cpu") -> CLIPFeatures:
    """The CLIP network ``model_name`` with the weights of the local file ``weights_path`` (see the
    module doc), on ``device``; a missing file raises :class:`~attngan.metrics.MissingWeightsError`
    of ``clip_weights``, a file that does not fit the architecture a
    :class:`~attngan.errors.SettingError` of ``clip_weights``."""
    from ..hub import file_sha256

    file, argument, _, purpose = WEIGHT_FILES["clip"]
    path = require_weights_file(weights_path, file, argument, purpose)
    state, kind = read_clip_weights(path)
    quick_gelu = kind == "torchscript" or model_name.endswith("-quickgelu")
    model = build_clip_model(model_name, quick_gelu)
    expected = model.state_dict()
    transient = {name for name, _ in model.named_buffers()} - set(expected)  # e.g. attn_mask (traced archives keep it)
    state = {k: v for k, v in state.items() if k not in transient}
    if "logit_scale" in state and "logit_scale" in expected:
        state["logit_scale"] = state["logit_scale"].reshape(expected["logit_scale"].shape)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:400]
        raise SettingError(CLIP_ARGUMENT, f"{path} does not fit open_clip's {model_name} ({{{CLIP_MODEL_ARGUMENT}}}): "
                                          f"{reason}") from None
    open_clip = _open_clip()
    features = CLIPFeatures(model, open_clip.get_tokenizer(model_name), model_name, quick_gelu, path,
                            file_sha256(path), kind).to(device)
    logger.info("loaded %s", features.identity)
    return features


class TextFeatureCache:
    """CLIP text embeddings of a fixed list of texts (a caption pool), each computed once, on demand."""

    def __init__(self, clip: CLIPFeatures, texts: Sequence[str]) -> None:
        self.clip, self.texts = clip, list(texts)
        self.done = np.zeros(len(self.texts), dtype=bool)
        self.values: torch.Tensor | None = None

    def get(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Embeddings ``[len(indices), D]`` (CPU) of the texts at ``indices``."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        missing = np.unique(index[~self.done[index]])
        if missing.size:
            new = self.clip.text_features([self.texts[i] for i in missing]).cpu()
            if self.values is None:
                self.values = torch.zeros(len(self.texts), new.shape[1])
            self.values[torch.from_numpy(missing)] = new
            self.done[missing] = True
        assert self.values is not None
        return self.values[torch.from_numpy(index)]


# --------------------------------------------------------------------------- what the CLIP metrics share

CAPTION_NOTE = ("captions as the data set holds them (shapes: as written; others: their words, lower-cased, without "
                "punctuation, whole -- not cut to the model's max_words)")


def clip_of(ctx: EvalContext) -> CLIPFeatures:
    """The evaluation's CLIP network (``clip_model`` with the weights of ``clip_weights``), loaded
    once per evaluation."""
    cfg = ctx.cfg
    return ctx.resource("clip", lambda: load_clip(cfg.clip_model, cfg.clip_weights, ctx.device))


def caption_features(batch: SampleBatch, clip: CLIPFeatures) -> torch.Tensor:
    """CLIP text embeddings ``[B, D]`` (CPU) of the captions of ``batch``, computed once per batch."""
    return batch.memo(f"clip-text:{clip.identity}", lambda: clip.text_features(batch["caption_texts"]).cpu())


def clip_extras(clip: CLIPFeatures) -> dict[str, Any]:
    """What every CLIP record says of the network and the captions."""
    return {"clip_model": clip.model_name, "clip_weights_sha256": clip.weights_sha256,
            "clip_weights_format": clip.weights_format, "captions": CAPTION_NOTE}
