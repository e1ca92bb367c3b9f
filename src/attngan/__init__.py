"""attngan: AttnGAN text-to-image generation for modern PyTorch."""

__version__ = "0.1.0"

__all__ = ["__version__"]
