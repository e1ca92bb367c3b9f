"""How an ``attngan`` process ends.

Under ``torchrun`` (``WORLD_SIZE`` > 1) a worker ends with :func:`os._exit` once its command
has returned and its output is flushed: the gloo process group keeps native threads whose
destruction during the interpreter's teardown can abort the process (``terminate called
without an active exception``, exit -6) after a run that finished and wrote everything, and
torchrun would then report the whole run as failed. Every file the commands write is complete
before they return (atomic writes), so skipping the teardown loses nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn


def exit_code(exc: SystemExit) -> int:
    """The process exit status a :class:`SystemExit` stands for."""
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


def exit_process(code: int) -> NoReturn:
    """End the process with ``code``; under torchrun without the interpreter's teardown."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def run_command(command: Callable[[], object]) -> NoReturn:
    """Run a click command in standalone mode and end the process with its exit status."""
    try:
        command()
        code = 0
    except SystemExit as exc:
        code = exit_code(exc)
    exit_process(code)
