"""Losses as small pure functions returning tensors."""

from .damsm import sentence_loss, word_image_similarity, words_loss
from .gan import discriminator_loss, generator_adversarial_loss, kl_loss

__all__ = ["discriminator_loss", "generator_adversarial_loss", "kl_loss", "sentence_loss", "word_image_similarity",
           "words_loss"]
