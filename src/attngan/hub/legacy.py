"""The one place that knows the original AttnGAN's module names.

- ``from_legacy`` / ``to_legacy``: rename state_dict keys between the original modules
  (``RNN_ENCODER``, ``CNN_ENCODER``, ``G_NET``/``G_DCGAN``, ``D_NET64/128/256``) and ours.
- ``infer_*_config``: read the architecture off an original state_dict.

The original's files themselves are read by :mod:`attngan.untrusted`, which never runs code.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..config import DiscriminatorConfig, GeneratorConfig, ImageEncoderConfig, TextEncoderConfig

Rule = tuple[str, str, int, str]  # (legacy prefix, our prefix, index offset, group regex); "{}" marks the group


def _rule(legacy: str, ours: str, offset: int = 0, group: str = r"\d+") -> Rule:
    return (legacy, ours, offset, group)


TEXT_ENCODER_RULES: list[Rule] = [_rule("encoder.", "embedding."), _rule("rnn.", "rnn.")]
IMAGE_ENCODER_RULES: list[Rule] = [
    _rule("{}.", "trunk.{}.", 0, r"(?:Conv2d|Mixed)_\w+?"),
    _rule("emb_features.", "project_regions."),
    _rule("emb_cnn_code.", "project_global."),
]
GENERATOR_RULES: list[Rule] = [
    _rule("ca_net.fc.", "conditioning.fc."),
    _rule("h_net1.fc.", "initial.fc."),
    _rule("h_net1.upsample{}.", "initial.upsample.{}.", -1),
    _rule("h_net{}.att.conv_context.", "refine.{}.attention.project_words.", -2),
    _rule("h_net{}.residual.", "refine.{}.residual.", -2),
    _rule("h_net{}.upsample.", "refine.{}.upsample.", -2),
    _rule("img_net{}.img.0.", "to_image.{}.conv.", -1),
]
DCGAN_GENERATOR_RULES: list[Rule] = GENERATOR_RULES[:-1] + [_rule("img_net.img.0.", "to_image.0.conv.")]
_HEAD_RULES: list[Rule] = [
    _rule("img_code_s16.", "encode."),
    _rule("UNCOND_DNET.outlogits.0.", "unconditional_head.logits.0."),
    _rule("COND_DNET.jointConv.", "conditional_head.joint."),
    _rule("COND_DNET.outlogits.0.", "conditional_head.logits.0."),
]
DISCRIMINATOR_RULES: dict[int, list[Rule]] = {
    64: _HEAD_RULES,
    128: _HEAD_RULES + [_rule("img_code_s32.", "downsample.0."), _rule("img_code_s32_1.", "reduce.0.")],
    256: _HEAD_RULES + [
        _rule("img_code_s32.", "downsample.0."),
        _rule("img_code_s64.", "downsample.1."),
        _rule("img_code_s64_1.", "reduce.0."),
        _rule("img_code_s64_2.", "reduce.1."),
    ],
}


def _pattern(template: str, group: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(r"\{\}", f"({group})"))


def _rename(key: str, rules: list[Rule], forward: bool) -> str:
    for legacy, ours, offset, group in rules:
        source, target = (legacy, ours) if forward else (ours, legacy)
        m = _pattern(source, group).match(key)
        if m is None:
            continue
        if "{}" not in source:
            return target + key[m.end():]
        arg = m.group(1)
        if arg.isdigit():
            arg = str(int(arg) + (offset if forward else -offset))
        return target.format(arg) + key[m.end():]
    raise KeyError(key)


def _convert(state: dict[str, torch.Tensor], rules: list[Rule], forward: bool, what: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        try:
            out[_rename(key, rules, forward)] = value
        except KeyError:
            raise KeyError(f"{what}: unexpected state_dict entry {key!r}") from None
    return out


def from_legacy(state: dict[str, torch.Tensor], rules: list[Rule], what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Original key names -> ours."""
    return _convert(state, rules, True, what)


def to_legacy(state: dict[str, torch.Tensor], rules: list[Rule], what: str = "model") -> dict[str, torch.Tensor]:
    """Our key names -> the original's."""
    return _convert(state, rules, False, what)


def generator_rules(state_or_config: dict[str, Any] | GeneratorConfig) -> list[Rule]:
    """Rules for a generator given an original state_dict or our config."""
    if isinstance(state_or_config, GeneratorConfig):
        dcgan = state_or_config.variant == "dcgan"
    else:
        dcgan = "img_net.img.0.weight" in state_or_config
    return DCGAN_GENERATOR_RULES if dcgan else GENERATOR_RULES


def fill_num_batches_tracked(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add BatchNorm counters missing from checkpoints of older torch versions."""
    out = dict(state)
    for key, value in reference.items():
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = torch.zeros_like(value)
    return out


# --------------------------------------------------------------------------- configs


def _count(state: dict[str, Any], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def infer_text_encoder_config(state: dict[str, torch.Tensor], max_words: int = 18) -> TextEncoderConfig:
    """Architecture of an original ``RNN_ENCODER`` state_dict."""
    vocab, word_dim = state["encoder.weight"].shape
    gates, hidden = state["rnn.weight_hh_l0"].shape
    rnn_type = {4: "lstm", 3: "gru"}.get(gates // hidden)
    if rnn_type is None:
        raise ValueError("text encoder: rnn weights are neither LSTM nor GRU shaped")
    bidirectional = "rnn.weight_hh_l0_reverse" in state
    layers = _count(state, r"rnn\.weight_ih_l(\d+)")
    return TextEncoderConfig(vocab_size=vocab, word_embedding_dim=word_dim, hidden_dim=hidden * (2 if bidirectional else 1),
                             rnn_type=rnn_type, bidirectional=bidirectional, num_layers=layers, max_words=max_words)


def infer_generator_config(state: dict[str, torch.Tensor]) -> GeneratorConfig:
    """Architecture of an original ``G_NET`` / ``G_DCGAN`` state_dict."""
    fc = state["ca_net.fc.weight"]
    condition_dim, text_dim = fc.shape[0] // 4, fc.shape[1]
    noise_dim = state["h_net1.fc.0.weight"].shape[1] - condition_dim
    dcgan = "img_net.img.0.weight" in state
    head = state["img_net.img.0.weight" if dcgan else "img_net1.img.0.weight"]
    ups = _count(state, r"h_net1\.upsample(\d+)\.")
    return GeneratorConfig(
        text_dim=text_dim, condition_dim=condition_dim, noise_dim=noise_dim, channels=head.shape[1],
        num_residual=max(_count(state, r"h_net2\.residual\.(\d+)\."), 1), num_stages=_count(state, r"h_net(\d+)\."),
        first_stage_size=4 * 2**ups, variant="dcgan" if dcgan else "multi_stage", legacy_mask_tiling=True,
    )


def infer_discriminator_config(state: dict[str, torch.Tensor]) -> DiscriminatorConfig:
    """Architecture of an original ``D_NET64/128/256`` state_dict."""
    size = 256 if "img_code_s64.0.weight" in state else 128 if "img_code_s32.0.weight" in state else 64
    ndf = state["img_code_s16.0.weight"].shape[0]
    joint = state["COND_DNET.jointConv.0.weight"].shape[1]
    return DiscriminatorConfig(image_size=size, channels=ndf, text_dim=joint - ndf * 8,
                               unconditional="UNCOND_DNET.outlogits.0.weight" in state)


def infer_image_encoder_config(state: dict[str, torch.Tensor]) -> ImageEncoderConfig:
    """Architecture of an original ``CNN_ENCODER`` state_dict."""
    return ImageEncoderConfig(kind="inception", embedding_dim=state["emb_cnn_code.weight"].shape[0])


def discriminator_rules(size: int) -> list[Rule]:
    if size not in DISCRIMINATOR_RULES:
        raise ValueError(f"the original has no discriminator for {size}px")
    return DISCRIMINATOR_RULES[size]


