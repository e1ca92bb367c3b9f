"""Frozen configuration dataclasses for every component.

Models take these as constructor arguments; only the CLI reads YAML and flags. Each
dataclass converts to and from a plain dict (``to_dict`` / ``from_dict``) so the resolved
configuration can be written beside every run and every exported model.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from .errors import SettingError

T = TypeVar("T")


class ConfigError(SettingError):
    """A configuration value is invalid; ``field`` names it, dotted as in a preset (``data.root``),
    or the message does."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(field, message)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown fields by name.

    Nested dataclass fields are built recursively.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"from_dict builds dataclasses, not {cls!r}")
    known = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown field(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        ftype = _dataclass_in(hints[name])
        if ftype is not None and isinstance(value, dict):
            value = from_dict(ftype, value, path)
        elif isinstance(value, list):
            value = tuple(value)
        if not _matches(value, hints[name]):
            raise ConfigError(f"{path}: expected {_type_name(hints[name])}, got {type(value).__name__} {value!r:.60}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required fields
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    except SettingError as exc:
        if isinstance(exc, ConfigError) or not where:
            raise
        raise ConfigError(exc.message, f"{where}.{exc.field}") from None  # the field's place in the config


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the field type ``hint`` (an int is a float; a bool is neither)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    hint = origin or hint
    if hint is type(None):
        return value is None
    if hint in (int, float) and isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return "a mapping" if dataclasses.is_dataclass(hint) else hint.__name__
    return str(hint).replace("typing.", "")


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict (JSON/YAML friendly) form of a config dataclass."""
    out = dataclasses.asdict(obj)
    return _lists(out)


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    return value


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type in ``hint`` (``X`` or ``X | None``), else None."""
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


@dataclass(frozen=True)
class TextEncoderConfig:
    """Embedding -> (bi)LSTM/GRU text encoder (the original ``RNN_ENCODER``)."""

    vocab_size: int = 0  # 0: taken from the training data's vocabulary
    word_embedding_dim: int = 300  # input to the RNN ("ninput")
    hidden_dim: int = 256  # output feature size D, summed over directions
    rnn_type: str = "lstm"
    bidirectional: bool = True
    num_layers: int = 1
    dropout: float = 0.5
    max_words: int = 18

    def __post_init__(self) -> None:
        _check(self.vocab_size == 0 or self.vocab_size >= 2, "text_encoder.vocab_size must be >= 2 (or 0: from the data)")
        _check(self.rnn_type in ("lstm", "gru"), "text_encoder.rnn_type must be 'lstm' or 'gru'")
        directions = 2 if self.bidirectional else 1
        _check(self.hidden_dim % directions == 0, "text_encoder.hidden_dim must be divisible by directions")
        _check(self.max_words >= 1, "text_encoder.max_words must be >= 1")
        _check(0.0 <= self.dropout < 1.0, "text_encoder.dropout must be in [0, 1)")


@dataclass(frozen=True)
class ImageEncoderConfig:
    """DAMSM image encoder: Inception-v3 trunk (``inception``) or a light CNN (``light``)."""

    kind: str = "inception"
    embedding_dim: int = 256
    image_size: int = 299  # input resolution the encoder resizes to
    light_channels: int = 32  # width of the light CNN's first layer
    freeze_trunk: bool = True  # only used when ImageNet weights are given

    def __post_init__(self) -> None:
        _check(self.kind in ("inception", "light"), "image_encoder.kind must be 'inception' or 'light'")
        if self.kind == "light":
            _check(self.image_size in (32, 64, 128, 256),
                   "image_encoder.image_size for the light encoder must be 32, 64, 128 or 256")


@dataclass(frozen=True)
class GeneratorConfig:
    """Multi-stage AttnGAN generator (``G_NET``) or its single-output DCGAN variant."""

    text_dim: int = 256  # word/sentence feature size D
    condition_dim: int = 100
    noise_dim: int = 100
    channels: int = 32  # "ngf": feature width of the refinement stages
    num_residual: int = 2
    num_stages: int = 3
    first_stage_size: int = 64
    variant: str = "multi_stage"  # or "dcgan" (one image from the last stage)
    self_attention: bool = False
    spectral_norm: bool = False
    # Scale of the conditioning-augmentation noise: c = mu + condition_noise * eps * sigma. The
    # original is 1.0. Small text encoders give small sentence features, whose mu is then drowned
    # by unit noise and the first stage ignores the caption; a smaller scale keeps it audible.
    condition_noise: float = 1.0
    # Not in the original: the first stage's up-blocks are each followed by a per-channel scale and
    # shift computed from the condition c (FiLM, Perez et al. 2018; as DF-GAN fuses the sentence into
    # every block), zero-initialised so a fresh stage starts as the original's. The original feeds
    # c only into the first linear layer next to the noise, so what the caption sets (a named
    # background) can only shift what the noise draws.
    condition_modulation: bool = False
    # The original tiles the word mask with ``repeat(queryL, 1)``, which pairs rows with the
    # wrong sample when captions in a batch have different lengths. True reproduces it exactly
    # (converted checkpoints); False masks each sample's own padding.
    legacy_mask_tiling: bool = False

    def __post_init__(self) -> None:
        _check(1 <= self.num_stages <= 4, "generator.num_stages must be between 1 and 4")
        _check(self.first_stage_size in (8, 16, 32, 64, 128),
               "generator.first_stage_size must be one of 8, 16, 32, 64, 128")
        _check(self.variant in ("multi_stage", "dcgan"), "generator.variant must be 'multi_stage' or 'dcgan'")
        _check(self.channels % 2 == 0 and self.channels >= 2, "generator.channels must be even")
        _check(self.condition_noise >= 0, "generator.condition_noise must be >= 0")

    @property
    def image_sizes(self) -> tuple[int, ...]:
        """Output resolution of each stage, e.g. (64, 128, 256)."""
        return tuple(self.first_stage_size * 2**i for i in range(self.num_stages))

    @property
    def output_size(self) -> int:
        return self.image_sizes[-1]


@dataclass(frozen=True)
class DiscriminatorConfig:
    """One discriminator (``D_NET64/128/256``) for images of ``image_size``."""

    image_size: int = 64
    channels: int = 64  # "ndf"
    text_dim: int = 256
    unconditional: bool = True  # the unconditional head ("b_jcu")
    spectral_norm: bool = False
    self_attention: bool = False
    # how the conditional head meets the sentence: "concat" (the original: the sentence tiled and
    # concatenated to the 4x4 features, a 3x3 conv, a 4x4 conv) or "projection" (Miyato & Koyama:
    # pooled features, a linear logit plus their inner product with the embedded sentence)
    conditioning: str = "concat"
    # BatchNorm after its convolutions (the original). Real and generated images pass in separate
    # batches, each normalised by its own statistics, which hides an error the whole generated
    # batch shares (a background that is neither of the real ones, say); False: no normalisation
    batchnorm: bool = True

    def __post_init__(self) -> None:
        _check(self.image_size in (16, 32, 64, 128, 256),
               "discriminator.image_size must be 16, 32, 64, 128 or 256")
        _check(self.conditioning in ("concat", "projection"),
               "discriminator.conditioning must be 'concat' or 'projection'")


@dataclass(frozen=True)
class DAMSMLossConfig:
    """Smoothing factors of the DAMSM losses (paper eq. 9-11) and the generator's weight.

    ``gamma1`` sharpens the attention of each word over the image regions (eq. 9), ``gamma2``
    weighs the words in the word-level image-caption score (eq. 10), ``gamma3`` scales the
    scores in the caption-image posterior (eq. 11).
    """

    gamma1: float = 4.0
    gamma2: float = 5.0
    gamma3: float = 10.0
    weight: float = 5.0  # "LAMBDA" in the original configs

    def __post_init__(self) -> None:
        _check(self.gamma1 > 0 and self.gamma2 > 0 and self.gamma3 > 0, "DAMSM gamma1, gamma2 and gamma3 must be > 0")
        _check(self.weight >= 0, "DAMSM weight must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    """Everything an inference folder needs to rebuild its modules and score with them.

    ``damsm`` holds the DAMSM loss settings the model was trained with (the smoothing factors
    belong to its text and image encoders: scoring a caption against an image with them, as
    the server's explanation does, uses the same ``gamma1`` / ``gamma2``). Folders written
    before it was recorded, and converted original checkpoints, get the original's values.
    """

    text_encoder: TextEncoderConfig
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    image_encoder: ImageEncoderConfig | None = None
    name: str = "attngan"
    damsm: DAMSMLossConfig = field(default_factory=DAMSMLossConfig)

    def __post_init__(self) -> None:
        _check(self.text_encoder.hidden_dim == self.generator.text_dim,
               "generator.text_dim must equal text_encoder.hidden_dim")
        if self.image_encoder is not None:
            _check(self.image_encoder.embedding_dim == self.text_encoder.hidden_dim,
                   "image_encoder.embedding_dim must equal text_encoder.hidden_dim")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"model config: expected a mapping, got {type(data).__name__}")
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config: unknown field(s) {', '.join(unknown)}")
        if "text_encoder" not in data:
            raise ConfigError("model config: missing field text_encoder")
        te = from_dict(TextEncoderConfig, data.pop("text_encoder"), "text_encoder")
        gen = from_dict(GeneratorConfig, data.pop("generator", {}), "generator")
        ie_data = data.pop("image_encoder", None)
        ie = from_dict(ImageEncoderConfig, ie_data, "image_encoder") if ie_data is not None else None
        damsm = from_dict(DAMSMLossConfig, data.pop("damsm", {}), "damsm")
        if not isinstance(data.get("name", ""), str):
            raise ConfigError(f"name: expected str, got {type(data['name']).__name__}")
        return cls(text_encoder=te, generator=gen, image_encoder=ie, damsm=damsm, **data)


def bird_config(vocab_size: int = 5450) -> ModelConfig:
    """The published CUB-birds configuration (``bird_attn2.yml`` + ``DAMSM/bird.yml``)."""
    return ModelConfig(
        text_encoder=TextEncoderConfig(vocab_size=vocab_size, hidden_dim=256, max_words=18),
        generator=GeneratorConfig(text_dim=256, condition_dim=100, noise_dim=100, channels=32,
                                  num_residual=2, num_stages=3, legacy_mask_tiling=True),
        image_encoder=ImageEncoderConfig(kind="inception", embedding_dim=256),
        name="attngan-birds",
    )
