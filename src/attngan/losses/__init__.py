"""Losses as small pure functions returning tensors."""

from .damsm import damsm_losses, sentence_loss, word_image_similarity, words_loss
from .gan import (
    DiscriminatorLogits,
    discriminator_loss,
    discriminators_loss,
    generator_adversarial_loss,
    generator_loss,
    kl_loss,
)

__all__ = ["DiscriminatorLogits", "damsm_losses", "discriminator_loss", "discriminators_loss", "generator_adversarial_loss", "generator_loss",
           "kl_loss", "sentence_loss", "word_image_similarity", "words_loss"]
