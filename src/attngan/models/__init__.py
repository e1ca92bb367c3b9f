"""Neural network modules and pure tensor functions (no I/O)."""

from .attention import WordAttention, word_attention
from .discriminator import Discriminator
from .generator import ConditioningAugmentation, Generator, GeneratorOutput
from .image_encoder import InceptionImageEncoder, LightImageEncoder, build_image_encoder
from .text_encoder import TextEncoder

__all__ = [
    "ConditioningAugmentation", "Discriminator", "Generator", "GeneratorOutput", "InceptionImageEncoder",
    "LightImageEncoder", "TextEncoder", "WordAttention", "build_image_encoder", "word_attention",
]
