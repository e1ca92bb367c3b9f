"""Model files: attngan's own folders, and the original AttnGAN's checkpoints.

- :mod:`.folders`: inference folders (``config.json`` + ``model.safetensors`` +
  ``vocab.json``) and DAMSM encoder folders, written atomically, read without running code.
- :mod:`.remote`: ``org/name`` model ids resolved through the Hugging Face Hub's cache.
- :mod:`.legacy` and :mod:`.convert`: the original's module names and its ``.pth`` files,
  turned into attngan modules and folders (``attngan convert``).
"""

from .folders import (
    CANDIDATES_KEY,
    CONFIG_NAME,
    EXAMPLES_KEY,
    TRUNCATION_KEY,
    VOCAB_NAME,
    WEIGHTS_NAME,
    DAMSMEncoders,
    ModelBundle,
    build_bundle,
    check_example_captions,
    checked_metadata,
    file_sha256,
    is_model_folder,
    load_damsm,
    load_pretrained,
    read_config,
    save_damsm,
    save_pretrained,
    state_dict_of,
    update_metadata,
)
from .remote import looks_like_repo_id, resolve_model_folder

__all__ = ["CANDIDATES_KEY", "CONFIG_NAME", "EXAMPLES_KEY", "TRUNCATION_KEY", "VOCAB_NAME", "WEIGHTS_NAME", "DAMSMEncoders", "ModelBundle", "build_bundle",
           "check_example_captions", "checked_metadata", "file_sha256", "is_model_folder",
           "load_damsm", "load_pretrained", "looks_like_repo_id", "read_config", "resolve_model_folder", "save_damsm",
           "save_pretrained", "state_dict_of", "update_metadata"]
