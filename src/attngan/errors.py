"""The library's error types: one small hierarchy, each error carrying the setting at fault.

The library names a setting by its own name (an argument, ``num_samples``, or a config field,
``data.root``); only the command line turns those names into flags (``--num-samples``,
``--data-root``: :mod:`attngan.cli.flags`). A message may mention further settings as
``{name}``; :meth:`SettingError.render` fills them in with whatever naming the caller uses.

    AttnGANError
      SettingError (also a ValueError)         a setting's value cannot be used
        ConfigError                                a configuration field (attngan.config)
        MissingFileError (also FileNotFoundError)  a file or folder a setting leads to is absent
"""

from __future__ import annotations

import re
from collections.abc import Callable

_MENTION = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


class AttnGANError(Exception):
    """The base of the errors attngan raises on purpose (bad input, missing files)."""


class SettingError(AttnGANError, ValueError):
    """``field``'s value cannot be used; ``message`` says why (other settings as ``{name}``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message with ``name(setting)`` for the field and every ``{setting}`` it mentions."""
        text = _MENTION.sub(lambda m: name(m.group(1)), self.message)
        return f"{name(self.field)}: {text}" if self.field else text

    def __str__(self) -> str:
        return self.render()


class MissingFileError(SettingError, FileNotFoundError):
    """A file or folder that ``field`` leads to (or that a cache should hold) does not exist."""
