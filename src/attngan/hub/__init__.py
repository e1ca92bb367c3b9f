"""Model files: attngan's own folders, and the original AttnGAN's checkpoints.

- :mod:`.folders`: inference folders (``config.json`` + ``model.safetensors`` +
  ``vocab.json``) and DAMSM encoder folders, written atomically, read without running code.
- :mod:`.legacy` and :mod:`.convert`: the original's module names and its ``.pth`` files,
  turned into attngan modules and folders (``attngan convert``).
"""

from .folders import (
    CONFIG_NAME,
    VOCAB_NAME,
    WEIGHTS_NAME,
    DAMSMEncoders,
    ModelBundle,
    build_bundle,
    file_sha256,
    load_damsm,
    load_pretrained,
    read_config,
    save_damsm,
    save_pretrained,
    state_dict_of,
)

__all__ = ["CONFIG_NAME", "VOCAB_NAME", "WEIGHTS_NAME", "DAMSMEncoders", "ModelBundle", "build_bundle", "file_sha256",
           "load_damsm", "load_pretrained", "read_config", "save_damsm", "save_pretrained", "state_dict_of"]
