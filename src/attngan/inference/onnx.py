"""ONNX export of the text encoder and the generator, and an ONNX Runtime backend.

:class:`TextEncoder` packs its padded batch (``pack_padded_sequence``), which does not
trace to ONNX. :class:`ExportableTextEncoder` computes the same features without packing:
each direction of each layer is a one-directional RNN; the forward one runs over the
padded sequence (padding comes after the caption, so it never reaches a real position),
the backward one over each caption reversed *within its length* (an index gather that
leaves padding at the end). Results equal the packed encoder's to float rounding.

A model's ONNX folder holds ``text_encoder.onnx``, ``generator.onnx`` and ``onnx.json``
(the model hash it was exported from, the output names, the opset).

The exported modules are twins of references in :mod:`attngan.models`, bound to them by parity
tests (as the table in :mod:`attngan.inference.fast`):

======================================  =========================================================  ==================================================================
twin                                    reference                                                  parity test
======================================  =========================================================  ==================================================================
:class:`ExportableTextEncoder`          :meth:`~attngan.models.text_encoder.TextEncoder.forward`   ``tests/test_onnx.py::test_exportable_text_encoder_equals_packed``
:class:`ExportableGenerator`            :class:`~attngan.models.generator.Generator`               ``tests/test_onnx.py::test_onnx_pipeline_matches_torch``
======================================  =========================================================  ==================================================================
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..cache import cache_dir
from ..errors import SettingError
from ..files import read_format_json, staged_dir
from ..fingerprint import state_fingerprint
from ..hub import ModelBundle, state_dict_of
from ..models.generator import Generator, GeneratorOutput
from ..models.text_encoder import TextEncoder
from ..precision import full_precision
from .backends import fp32_only

log = logging.getLogger(__name__)

OPSET = 17
META_NAME = "onnx.json"
TEXT_ENCODER_FILE = "text_encoder.onnx"
GENERATOR_FILE = "generator.onnx"
FORMAT_VERSION = 1


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B, T, F]``, ``index [B, T]`` -> ``y[b, t] = x[b, index[b, t]]``."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class ExportableTextEncoder(nn.Module):
    """:class:`TextEncoder` without packed sequences (traceable; inference only).

    Takes ``tokens [B, T]`` int64 and ``lengths [B]`` int64 (every length >= 1) and returns
    ``(word_features [B, D, T], sentence_features [B, D])``, zero at padded positions.
    """

    def __init__(self, encoder: TextEncoder) -> None:
        super().__init__()
        rnn = encoder.rnn
        self.embedding = nn.Embedding.from_pretrained(encoder.embedding.weight.detach().clone(), freeze=True)
        self.num_layers = rnn.num_layers
        self.directions = 2 if rnn.bidirectional else 1
        self.rnns = nn.ModuleList()
        for layer in range(self.num_layers):
            size = rnn.input_size if layer == 0 else rnn.hidden_size * self.directions
            for direction in range(self.directions):
                single = type(rnn)(size, rnn.hidden_size, 1, batch_first=True, bias=rnn.bias)
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ())
                single.load_state_dict({f"{n}_l0": getattr(rnn, n + suffix).detach().clone() for n in names})
                self.rnns.append(single)
        self.to(encoder.embedding.weight.device).float()
        self.eval()

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)  # [1, T]
        lengths = lengths.to(tokens.device).view(-1, 1)
        valid = positions < lengths  # [B, T]
        # position t <-> length-1-t inside each caption; padding maps to itself
        reverse = torch.where(valid, lengths - 1 - positions, positions)
        last = (lengths - 1).expand(-1, tokens.shape[1])  # [B, T]: every entry = length - 1
        x = self.embedding(tokens)
        finals: list[torch.Tensor] = []
        for layer in range(self.num_layers):
            outputs, finals = [], []
            for direction in range(self.directions):
                rnn = self.rnns[layer * self.directions + direction]
                if direction == 0:
                    out, _ = rnn(x)
                    finals.append(_gather_time(out, last)[:, 0])
                else:
                    out_reversed, _ = rnn(_gather_time(x, reverse))
                    finals.append(_gather_time(out_reversed, last)[:, 0])
                    out = _gather_time(out_reversed, reverse)
                outputs.append(out)
            x = torch.cat(outputs, dim=2) * valid.unsqueeze(-1).to(x.dtype)
        return x.transpose(1, 2), torch.cat(finals, dim=1)


class ExportableGenerator(nn.Module):
    """The generator with explicit noise: ``(noise [B, Z], eps [B, C], sentence [B, D],
    words [B, D, T], mask [B, T] bool)`` -> ``(*images, *attention_maps, mu, logvar, condition)``
    with images ``[B, 3, S_s, S_s]`` per stage and attention ``[B, T, H_s, W_s]`` per refinement stage.

    Works on a copy whose parametrized weights (spectral norm) are baked in as plain tensors.
    """

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = Generator(generator.config)  # a rebuilt copy (deepcopy breaks parametrized modules)
        self.generator.load_state_dict(generator.state_dict())
        self.generator.to(next(generator.parameters()).device).float().eval()
        for module in self.generator.modules():
            if parametrize.is_parametrized(module):
                parametrizations = module.parametrizations
                assert isinstance(parametrizations, nn.ModuleDict)
                for name in list(parametrizations.keys()):
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)

    def forward(self, noise: torch.Tensor, eps: torch.Tensor, sentence: torch.Tensor, words: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.generator(noise, sentence, words, mask, eps=eps)
        return (*out.images, *out.attention_maps, out.mu, out.logvar, out.condition)


def weights_fingerprint(bundle: ModelBundle) -> str:
    """SHA-256 (16 hex digits) of the text encoder's and generator's weights, as loaded now."""
    return state_fingerprint({name: tensor for name, tensor in state_dict_of(bundle).items()
                              if name.startswith(("text_encoder.", "generator."))})[:16]


def _output_names(generator: Generator) -> tuple[list[str], list[str]]:
    cfg = generator.config
    heads = 1 if cfg.variant == "dcgan" else cfg.num_stages
    return [f"image_{i}" for i in range(heads)], [f"attention_{i}" for i in range(cfg.num_stages - 1)]


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], outputs: list[str],
            axes: dict[str, dict[int, str]], opset: int) -> None:
    with warnings.catch_warnings():
        # the TorchScript-based exporter: fast, and the one that takes dynamic_axes
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes, do_constant_folding=True)


@torch.no_grad()
def export_onnx(bundle: ModelBundle, folder: str | os.PathLike[str], opset: int = OPSET) -> Path:
    """Export ``bundle``'s text encoder and generator to ``folder`` (replaced atomically), as fp32
    graphs whatever the host's precision (see :mod:`attngan.precision`).

    Batch size and caption length are dynamic. Returns the folder.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    cfg = bundle.config
    device = next(bundle.generator.parameters()).device
    tokens = torch.tensor([[1, 2, 3], [4, 5, 0]], dtype=torch.int64, device=device) % cfg.text_encoder.vocab_size
    tokens[1, 2] = 0
    lengths = torch.tensor([3, 2], dtype=torch.int64, device=device)
    text = ExportableTextEncoder(bundle.text_encoder).to(device)
    words, sentence = text(tokens, lengths)
    gcfg = cfg.generator
    noise = torch.randn(2, gcfg.noise_dim, device=device)
    eps = torch.randn(2, gcfg.condition_dim, device=device)
    image_names, attention_names = _output_names(bundle.generator)
    gen_outputs = [*image_names, *attention_names, "mu", "logvar", "condition"]
    with staged_dir(folder) as tmp, full_precision(device):
        _export(text, (tokens, lengths), tmp / TEXT_ENCODER_FILE, ["tokens", "lengths"], ["words", "sentence"],
                {"tokens": {0: "batch", 1: "words"}, "lengths": {0: "batch"}, "words": {0: "batch", 2: "words"},
                 "sentence": {0: "batch"}}, opset)
        axes: dict[str, dict[int, str]] = {"noise": {0: "batch"}, "eps": {0: "batch"}, "sentence": {0: "batch"},
                                           "words": {0: "batch", 2: "words"}, "mask": {0: "batch", 1: "words"}}
        axes.update({name: {0: "batch"} for name in [*image_names, "mu", "logvar", "condition"]})
        axes.update({name: {0: "batch", 1: "words"} for name in attention_names})
        _export(ExportableGenerator(bundle.generator), (noise, eps, sentence, words, tokens == 0),
                tmp / GENERATOR_FILE, ["noise", "eps", "sentence", "words", "mask"], gen_outputs, axes, opset)
        meta = {"format": "attngan-onnx", "format_version": FORMAT_VERSION, "model": cfg.name,
                "model_hash": str(bundle.metadata.get("sha256", "")), "weights": weights_fingerprint(bundle),
                "opset": opset, "images": image_names,
                "attention": attention_names, "torch": torch.__version__}
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2))
    log.info("exported %s to %s (opset %d)", cfg.name, folder, opset)
    return folder


def read_onnx_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``onnx.json`` of an exported folder; errors name the file."""
    file = Path(folder) / META_NAME
    return read_format_json(file, "attngan-onnx", "an attngan ONNX folder")


def default_onnx_dir(bundle: ModelBundle) -> Path:
    """``onnx/<model name>-<weights fingerprint>`` under :func:`attngan.cache.cache_root`: one
    export per set of weights, never written into the model folder."""
    return cache_dir("onnx") / f"{bundle.config.name}-{weights_fingerprint(bundle)}"


class OnnxBackend:
    """Runs an exported folder with ONNX Runtime, in fp32 (a :class:`~attngan.inference.backends.Backend`).

    Args:
        folder: a folder written by :func:`export_onnx`.
        device: ``cpu`` or ``cuda`` (CUDA needs onnxruntime-gpu; falls back to the CPU).
    """

    def __init__(self, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("the ONNX backend needs onnxruntime: pip install 'attngan[onnx]'") from None
        self.folder = Path(folder)
        self.meta = read_onnx_meta(self.folder)
        self._ort = ort
        self._sessions: dict[str, Any] = {}
        self.device = torch.device(device)
        self.name = "onnx"
        self.precision = "fp32"
        self._checked: ModelBundle | None = None

    def bind(self, bundle: ModelBundle, device: torch.device, precision: str) -> None:
        """Run on ``device`` (fp32 only); the folder must have been exported from ``bundle``'s weights."""
        self.precision = fp32_only("the ONNX backend", precision)
        if bundle is not self._checked and self.meta.get("weights") != weights_fingerprint(bundle):
            raise SettingError("backend", f"{self.folder} was exported from other weights than {bundle.config.name}'s: "
                                          "export it again (AttnGANPipeline.export_onnx, attngan export-onnx)")
        self._checked = bundle  # checked once per model (a device move binds again)
        self.device = torch.device(device)

    @classmethod
    def for_bundle(cls, bundle: ModelBundle, folder: str | os.PathLike[str] | None = None,
                   device: str | torch.device = "cpu") -> OnnxBackend:
        """Open ``folder`` (default :func:`default_onnx_dir`), exporting first when it is
        missing or was exported from other weights."""
        target = Path(folder) if folder is not None else default_onnx_dir(bundle)
        expected = weights_fingerprint(bundle)
        try:
            current = read_onnx_meta(target).get("weights")
        except (FileNotFoundError, ValueError):
            current = None
        if current != expected or not all((target / f).exists() for f in (TEXT_ENCODER_FILE, GENERATOR_FILE)):
            export_onnx(bundle, target)
        return cls(target, device)

    def _session(self, name: str) -> Any:
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in self._ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        key = f"{name}:{providers[0]}"
        if key not in self._sessions:
            path = self.folder / name
            if not path.exists():
                raise FileNotFoundError(f"{path} not found")
            self._sessions[key] = self._ort.InferenceSession(str(path), providers=providers)
        return self._sessions[key]

    def encode_text(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens [B, T]``, ``lengths [B]`` -> ``(words [B, D, T], sentence [B, D])`` (the twin of
        :meth:`TextEncoder.forward`, bound by ``tests/test_onnx.py::test_onnx_pipeline_matches_torch``)."""
        words, sentence = self._session(TEXT_ENCODER_FILE).run(
            None, {"tokens": _numpy(tokens).astype(np.int64), "lengths": _numpy(lengths).astype(np.int64)})
        return self._tensor(words), self._tensor(sentence)

    def generate(self, noise: torch.Tensor, eps: torch.Tensor, sentence: torch.Tensor, words: torch.Tensor,
                 mask: torch.Tensor, num_stages: int | None) -> GeneratorOutput:
        """The exported generator (the twin of :class:`Generator`, bound by the same test): shapes as
        :meth:`Generator.forward`."""
        full = len(self.meta["attention"]) + 1
        stages = full if num_stages is None else num_stages
        if not 1 <= stages <= full:
            raise ValueError(f"num_stages must be in 1..{full}, got {stages}")
        if len(self.meta["images"]) != full and stages != full:
            raise ValueError("this ONNX generator (single-image variant) only gives the image of its last stage")
        session = self._session(GENERATOR_FILE)
        feeds = {"noise": _numpy(noise).astype(np.float32), "eps": _numpy(eps).astype(np.float32),
                 "sentence": _numpy(sentence).astype(np.float32), "words": _numpy(words).astype(np.float32),
                 "mask": _numpy(mask).astype(bool)}
        names = [o.name for o in session.get_outputs()]
        out = dict(zip(names, session.run(None, feeds), strict=True))
        return GeneratorOutput([self._tensor(out[n]) for n in self.meta["images"][:stages]],
                               [self._tensor(out[n]) for n in self.meta["attention"][:stages - 1]],
                               self._tensor(out["mu"]), self._tensor(out["logvar"]), self._tensor(out["condition"]))

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()
