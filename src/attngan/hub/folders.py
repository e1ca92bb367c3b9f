"""Inference folders: ``config.json`` + ``model.safetensors`` + ``vocab.json``.

Written atomically (a temporary sibling folder renamed into place); read with
safetensors and JSON only, so loading a folder can never execute code. ``config.json``
records the SHA-256 of ``model.safetensors`` (``weights_sha256``), checked on load: a
truncated, bit-flipped or swapped weights file is refused, naming it.

``config.json``'s ``metadata`` is free-form (training run, source files...) except
``metadata.example_captions``: a list of captions the model was trained to draw (written by
``attngan train`` from its data set, by ``attngan convert`` from the original's test captions,
or by hand), which the web page offers as its placeholder and example buttons and ``GET
/v1/model`` returns. It is checked on load and save (a list of at most ``MAX_EXAMPLES``
non-empty strings) and is absent in older folders (:attr:`ModelBundle.example_captions` is
then empty). ``metadata.truncation``, where present, is the model's own default truncation of
the sampling noise (a number in (0, 1]; absent: 1.0, off), chosen on validation captions by
whoever trained it: the pipeline, and so ``generate``, ``evaluate``, ``serve`` and the web page,
use it unless told otherwise (checked where the pipeline reads it); ``metadata.candidates``, likewise,
its own default number of candidates per image (an integer >= 1; absent: 1, off; see
:mod:`attngan.inference.candidates`). Editing ``config.json`` leaves ``weights_sha256`` valid: the hash covers the
weights file only.

Where a folder is asked for by a Hugging Face Hub repo id (``org/name``) that is not an
existing local path, :func:`resolve_model_folder` fetches (or, offline, finds in the cache)
that repo's snapshot with ``huggingface_hub``, an optional dependency (``attngan[hub]``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..config import ConfigError, ModelConfig, to_dict
from ..files import read_format_json, staged_dir, write_atomic, write_safetensors
from ..models.generator import Generator
from ..models.image_encoder import ImageEncoder, build_image_encoder
from ..models.text_encoder import TextEncoder
from ..text import Vocabulary
from .remote import resolve_model_folder

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VOCAB_NAME = "vocab.json"
RUNTIME_METADATA = ("path", "sha256")  # set when a folder is loaded; not saved
EXAMPLES_KEY = "example_captions"  # metadata field: captions to offer as examples
TRUNCATION_KEY = "truncation"  # metadata field: the model's default sampling truncation
CANDIDATES_KEY = "candidates"  # metadata field: the model's default number of candidates per image
MAX_EXAMPLES = 32
MAX_EXAMPLE_CHARS = 1000
CONFIG_FIELDS = {"attngan": {"format", "format_version", "model", "metadata", "weights_sha256"},
                 "attngan-damsm": {"format", "format_version", "text_encoder", "image_encoder", "metadata",
                                   "weights_sha256"}}


@dataclass
class ModelBundle:
    """The modules of an inference folder, in eval mode on the CPU."""

    config: ModelConfig
    vocab: Vocabulary
    text_encoder: TextEncoder
    generator: Generator
    image_encoder: torch.nn.Module | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def example_captions(self) -> list[str]:
        """The captions stored with the model (``metadata.example_captions``); empty when none are."""
        return list(self.metadata.get(EXAMPLES_KEY) or [])

    def modules(self) -> dict[str, torch.nn.Module]:
        out: dict[str, torch.nn.Module] = {"text_encoder": self.text_encoder, "generator": self.generator}
        if self.image_encoder is not None:
            out["image_encoder"] = self.image_encoder
        return out


def check_example_captions(value: Any, where: str) -> list[str]:
    """``value`` as the ``metadata.example_captions`` of a folder: a list of at most ``MAX_EXAMPLES``
    non-empty strings of at most ``MAX_EXAMPLE_CHARS`` characters; errors name ``where``."""
    field_name = f"{where}: metadata.{EXAMPLES_KEY}"
    if not isinstance(value, list):
        raise ConfigError(f"{field_name} must be a list of captions, got {type(value).__name__}")
    if len(value) > MAX_EXAMPLES:
        raise ConfigError(f"{field_name} holds {len(value)} captions; at most {MAX_EXAMPLES} are kept")
    for i, caption in enumerate(value):
        if not isinstance(caption, str) or not caption.strip() or len(caption) > MAX_EXAMPLE_CHARS:
            raise ConfigError(f"{field_name}[{i}] must be a non-empty caption of at most {MAX_EXAMPLE_CHARS} "
                              f"characters, got {caption!r:.80}")
    return list(value)


def build_bundle(config: ModelConfig, vocab: Vocabulary, metadata: dict[str, Any] | None = None) -> ModelBundle:
    """Fresh (randomly initialised) modules for ``config``."""
    if len(vocab) != config.text_encoder.vocab_size:
        raise ConfigError(
            f"vocabulary has {len(vocab)} words but text_encoder.vocab_size is {config.text_encoder.vocab_size}"
        )
    image_encoder = build_image_encoder(config.image_encoder) if config.image_encoder is not None else None
    bundle = ModelBundle(config, vocab, TextEncoder(config.text_encoder), Generator(config.generator),
                         image_encoder, dict(metadata or {}))
    for m in bundle.modules().values():
        m.eval()
    return bundle


def state_dict_of(bundle: ModelBundle) -> dict[str, torch.Tensor]:
    """All weights with ``text_encoder.``/``generator.``/``image_encoder.`` prefixes."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in bundle.modules().items():
        for k, v in module.state_dict().items():
            out[f"{prefix}.{k}"] = v.detach().cpu().contiguous()
    return out


def _write_folder(path: str | os.PathLike[str], config: dict[str, Any], state: dict[str, torch.Tensor],
                  vocab: Vocabulary) -> Path:
    """Write config.json + model.safetensors + vocab.json into ``path`` atomically."""
    path = Path(path)
    with staged_dir(path, keep_others=True) as tmp:
        config = {**config, "weights_sha256": write_safetensors(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})}
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
        vocab.save(tmp / VOCAB_NAME)
    return path


def _read_weights(path: Path, expected_sha256: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of ``model.safetensors`` and its SHA-256, checked against ``config.json``'s."""
    weights = path / WEIGHTS_NAME
    try:
        digest = file_sha256(weights)
    except FileNotFoundError:
        raise FileNotFoundError(f"{weights} not found") from None
    if expected_sha256 is not None and digest != expected_sha256:
        raise ValueError(f"{weights} is truncated or corrupt: its SHA-256 is not the one {path / CONFIG_NAME} "
                         "records (a damaged copy, or weights from another folder)")
    try:
        return load_file(str(weights)), digest
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights} is truncated or corrupt ({exc})") from None


def _read_json(path: Path, kind: str, hint: str) -> dict[str, Any]:
    """``config.json`` of a folder of format ``kind``, its top-level fields checked; errors name it."""
    file = path / CONFIG_NAME
    data = read_format_json(file, kind, hint)
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"{file}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{file} has format_version {version}; this attngan reads up to {FORMAT_VERSION}")
    unknown = sorted(set(data) - CONFIG_FIELDS[kind])
    if unknown:
        raise ConfigError(f"{file}: unknown field(s) {', '.join(unknown)}")
    if not isinstance(data.get("metadata") or {}, dict):
        raise ConfigError(f"{file}: metadata must be an object")
    digest = data.get("weights_sha256")
    if digest is not None and not isinstance(digest, str):
        raise ConfigError(f"{file}: weights_sha256 must be a string")
    return data


def _load_modules(path: Path, modules: dict[str, torch.nn.Module], state: dict[str, torch.Tensor]) -> None:
    for prefix, module in modules.items():
        part = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path / WEIGHTS_NAME}: weights do not fit {prefix} of {path / CONFIG_NAME}: "
                             f"{str(exc)[:300]}") from None


def save_pretrained(bundle: ModelBundle, path: str | os.PathLike[str], weights_dtype: str = "float32") -> Path:
    """Write the folder atomically; in an existing folder at ``path`` the three model files are
    replaced and any other file (a model card, say) is kept.

    ``weights_dtype="float16"`` stores floating-point weights at half precision (half the
    file); they are loaded back into float32 modules.
    """
    if weights_dtype not in ("float32", "float16"):
        raise ValueError(f"weights_dtype must be 'float32' or 'float16', got {weights_dtype!r}")
    metadata = {k: v for k, v in bundle.metadata.items() if k not in RUNTIME_METADATA}
    if EXAMPLES_KEY in metadata:
        metadata[EXAMPLES_KEY] = check_example_captions(metadata[EXAMPLES_KEY], str(Path(path) / CONFIG_NAME))
    state = state_dict_of(bundle)
    if weights_dtype == "float16":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        metadata["weights_dtype"] = "float16"
    config = {"format": "attngan", "format_version": FORMAT_VERSION, "model": to_dict(bundle.config),
              "metadata": metadata}
    return _write_folder(path, config, state, bundle.vocab)


V = TypeVar("V")


def checked_metadata(bundle: ModelBundle, key: str, check: Callable[[Any], V], default: V, wanted: str) -> V:
    """``bundle.metadata[key]`` passed through ``check`` (which raises ValueError or TypeError on a bad
    value), or ``default`` where the folder sets none; a bad value is a :class:`ConfigError` naming
    the folder's ``config.json``, the field and ``wanted`` (what a good value is)."""
    value = bundle.metadata.get(key)
    if value is None:
        return default
    try:
        return check(value)
    except (ValueError, TypeError):
        where = Path(bundle.metadata["path"]) / CONFIG_NAME if "path" in bundle.metadata else CONFIG_NAME
        raise ConfigError(f"{where}: metadata.{key} must be {wanted}, got {value!r}") from None


def update_metadata(path: str | os.PathLike[str], updates: dict[str, Any]) -> Path:
    """Set ``updates`` in the ``metadata`` of the model folder ``path``'s ``config.json``, written
    atomically (the weights, and the hash that covers them, stay as they are); returns the file."""
    path = Path(path)
    data = _read_json(path, "attngan", "an attngan model folder")
    metadata = {**(data.get("metadata") or {}), **updates}
    if EXAMPLES_KEY in metadata:
        metadata[EXAMPLES_KEY] = check_example_captions(metadata[EXAMPLES_KEY], str(path / CONFIG_NAME))
    data["metadata"] = metadata
    return write_atomic(path / CONFIG_NAME, json.dumps(data, indent=2, sort_keys=True).encode())


def read_config(path: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, Any]]:
    """``(ModelConfig, metadata)`` from a folder's ``config.json``; errors name the file."""
    config, metadata, _ = _read_model_config(Path(path))
    return config, metadata


def _read_model_config(path: Path) -> tuple[ModelConfig, dict[str, Any], str | None]:
    data = _read_json(path, "attngan", "an attngan model folder")
    file = path / CONFIG_NAME
    if "model" not in data:
        raise ConfigError(f"{file}: missing field model")
    try:
        config = ModelConfig.from_dict(data["model"])
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    metadata = dict(data.get("metadata") or {})
    if EXAMPLES_KEY in metadata:
        check_example_captions(metadata[EXAMPLES_KEY], str(file))
    return config, metadata, data.get("weights_sha256")


def load_pretrained(path: str | os.PathLike[str], *, revision: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False) -> ModelBundle:
    """Load an inference folder into a :class:`ModelBundle` (CPU, eval mode).

    ``path`` is a folder, or a Hugging Face Hub repo id ``org/name`` that is not an existing
    path; ``revision``, ``cache_dir`` and ``local_files_only`` apply to repo ids only (see
    :func:`resolve_model_folder`).
    """
    path = resolve_model_folder(path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path}")
    config, metadata, expected = _read_model_config(path)
    vocab = Vocabulary.load(path / VOCAB_NAME)
    if len(vocab) != config.text_encoder.vocab_size:
        raise ConfigError(f"{path / VOCAB_NAME} has {len(vocab)} words but {path / CONFIG_NAME} says "
                          f"text_encoder.vocab_size {config.text_encoder.vocab_size}")
    bundle = build_bundle(config, vocab, metadata)
    state, digest = _read_weights(path, expected)
    _load_modules(path, bundle.modules(), state)
    # where the weights were read from and their hash describe this copy, never a saved one
    bundle.metadata.update(path=str(path), sha256=digest[:16])
    return bundle


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class DAMSMEncoders:
    """Text and image encoders trained together with the DAMSM losses, and their vocabulary."""

    text_encoder: TextEncoder
    image_encoder: ImageEncoder
    vocab: Vocabulary
    metadata: dict[str, Any] = field(default_factory=dict)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"text_encoder": self.text_encoder, "image_encoder": self.image_encoder}


def save_damsm(encoders: DAMSMEncoders, path: str | os.PathLike[str]) -> Path:
    """Write a DAMSM folder (``format: attngan-damsm``) atomically."""
    te = encoders.text_encoder.config
    ie = encoders.image_encoder.config
    config = {"format": "attngan-damsm", "format_version": FORMAT_VERSION, "text_encoder": to_dict(te),
              "image_encoder": to_dict(ie), "metadata": encoders.metadata}
    state = {f"{p}.{k}": v.detach().cpu().contiguous()
             for p, m in encoders.modules().items() for k, v in m.state_dict().items()}
    return _write_folder(path, config, state, encoders.vocab)


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path/config.json`` reads as a model folder's (``format: attngan``); False when it
    is anything else or unreadable (the caller's own reader then names the fault)."""
    path = Path(path)
    try:
        data = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == "attngan"


def load_damsm(path: str | os.PathLike[str]) -> DAMSMEncoders:
    """Load a DAMSM folder written by ``train-damsm``, or the text and image encoders of a model
    folder saved with its image encoder (the bundled model's, say: a new generator trained against
    the encoders it shipped with). CPU, eval mode."""
    from ..config import ImageEncoderConfig, TextEncoderConfig, from_dict

    path = Path(path)
    if is_model_folder(path):
        try:
            bundle = load_pretrained(path)
        except ValueError as exc:  # ConfigError too
            raise ConfigError(f"{path} is not a DAMSM folder (written by train-damsm) and does not load as a "
                              f"model folder: {exc}") from None
        if bundle.image_encoder is None:
            raise ConfigError(f"{path} is a model folder without an image encoder: the DAMSM term needs one "
                              "(give the DAMSM folder written by train-damsm)")
        # build_bundle builds it with build_image_encoder, as load_damsm below does
        return DAMSMEncoders(bundle.text_encoder, cast(ImageEncoder, bundle.image_encoder), bundle.vocab,
                             {"encoders_of_model": str(path), "model_sha256": bundle.metadata.get("sha256")})
    file = path / CONFIG_NAME
    data = _read_json(path, "attngan-damsm", "a DAMSM folder written by train-damsm")
    try:
        for name in ("text_encoder", "image_encoder"):
            if name not in data:
                raise ConfigError(f"missing field {name}")
        te_cfg = from_dict(TextEncoderConfig, data["text_encoder"], "text_encoder")
        ie_cfg = from_dict(ImageEncoderConfig, data["image_encoder"], "image_encoder")
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    vocab = Vocabulary.load(path / VOCAB_NAME)
    if len(vocab) != te_cfg.vocab_size:
        raise ConfigError(f"{path / VOCAB_NAME} has {len(vocab)} words but {file} says vocab_size {te_cfg.vocab_size}")
    enc = DAMSMEncoders(TextEncoder(te_cfg), build_image_encoder(ie_cfg), vocab, dict(data.get("metadata") or {}))
    _load_modules(path, enc.modules(), _read_weights(path, data.get("weights_sha256"))[0])
    for m in enc.modules().values():
        m.eval()
    return enc
