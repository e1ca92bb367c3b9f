"""attngan: AttnGAN text-to-image generation for modern PyTorch.

The public names below are imported on first use (PEP 562), so ``import attngan`` stays
light: it loads neither torch nor any sub-module until one of them is asked for::

    from attngan import AttnGANPipeline
    pipe = AttnGANPipeline.from_pretrained()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # inference
    "AttnGANPipeline": "inference.pipeline",
    "PipelineOutput": "inference.pipeline",
    "bundled_model_path": "inference.pipeline",
    # model folders
    "ModelBundle": "hub",
    "load_pretrained": "hub",
    "save_pretrained": "hub",
    "DAMSMEncoders": "hub",
    "load_damsm": "hub",
    "save_damsm": "hub",
    # configuration
    "ConfigError": "config",
    "ModelConfig": "config",
    "TextEncoderConfig": "config",
    "ImageEncoderConfig": "config",
    "GeneratorConfig": "config",
    "DiscriminatorConfig": "config",
    "DAMSMLossConfig": "config",
    # text
    "Vocabulary": "text",
    "EncodedCaption": "text",
    "UnknownWordsError": "text",
    # training
    "GANTrainConfig": "training.options",
    "DAMSMTrainConfig": "training.options",
    "resolve_config": "training.options",
    "train_gan": "training.gan",
    "train_damsm": "training.damsm",
    # original checkpoints
    "convert_original": "hub.convert",
}

__all__ = [
    "__version__",
    "AttnGANPipeline", "PipelineOutput", "bundled_model_path",
    "ModelBundle", "load_pretrained", "save_pretrained", "DAMSMEncoders", "load_damsm", "save_damsm",
    "ConfigError", "ModelConfig", "TextEncoderConfig", "ImageEncoderConfig", "GeneratorConfig",
    "DiscriminatorConfig", "DAMSMLossConfig",
    "Vocabulary", "EncodedCaption", "UnknownWordsError",
    "GANTrainConfig", "DAMSMTrainConfig", "resolve_config", "train_gan", "train_damsm",
    "convert_original",
]


def __getattr__(name: str) -> object:
    module: str | None
    if name == "__version__":  # its one home is attngan/version.py
        module = "version"
    else:
        module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


if TYPE_CHECKING:  # for type checkers and IDEs; never run
    from .config import (
        ConfigError,
        DAMSMLossConfig,
        DiscriminatorConfig,
        GeneratorConfig,
        ImageEncoderConfig,
        ModelConfig,
        TextEncoderConfig,
    )
    from .hub import DAMSMEncoders, ModelBundle, load_damsm, load_pretrained, save_damsm, save_pretrained
    from .hub.convert import convert_original
    from .inference.pipeline import AttnGANPipeline, PipelineOutput, bundled_model_path
    from .text import EncodedCaption, UnknownWordsError, Vocabulary
    from .training.damsm import train_damsm
    from .training.gan import train_gan
    from .training.options import DAMSMTrainConfig, GANTrainConfig, resolve_config
    from .version import __version__
