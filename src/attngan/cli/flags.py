"""The one place that turns the library's setting names into command-line flags: a
:class:`~attngan.errors.SettingError` names the setting at fault (``num_samples``,
``data.root``), and the command line reports it as its flag (``--num-samples``, ``--data-root``)."""

from __future__ import annotations

from ..errors import SettingError

# library setting -> flag, where the flag is not the setting's name with dashes ("num_samples" -> "--num-samples")
FLAGS: dict[str, str] = {
    "data.kind": "--data",
    "data.root": "--data-root",
    "data.split": "--split",
    "data.missing": "--missing",
    "data.skip_bad": "--skip-bad",
    "data.captions_per_image": "--captions-per-image",
    "data.cache_dir": "--cache-dir",
    "data.num_workers": "--num-workers",
    "data.extra": "--data-option",
    "classifier": "--classifier",
    "image_encoder": "attngan convert --image-encoder",
}


def flag(setting: str) -> str:
    """The flag of a library setting: :data:`FLAGS`, else ``--`` + its last part with dashes."""
    return FLAGS.get(setting) or "--" + setting.rsplit(".", 1)[-1].replace("_", "-")


def message(exc: BaseException) -> str:
    """``exc``'s message, with every setting a :class:`SettingError` names given as its flag."""
    return exc.render(flag) if isinstance(exc, SettingError) else str(exc)

