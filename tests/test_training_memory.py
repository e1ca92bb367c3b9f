"""``SpeedOptions.keep_heap``: the allocator setting that keeps freed memory for the next step."""

from __future__ import annotations

import platform
import sys

import pytest

from attngan.training import memory
from attngan.training.options import SpeedOptions


def test_the_reference_trainer_leaves_the_allocator_alone() -> None:
    assert SpeedOptions().keep_heap and not SpeedOptions.reference().keep_heap


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt settings exist on glibc only")
def test_keep_freed_memory_applies_once_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_applied", None)
    assert memory.keep_freed_memory() is True
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *_: (_ for _ in ()).throw(OSError("not again")))
    assert memory.keep_freed_memory() is True  # remembered: the library is not asked twice


def test_without_a_c_library_it_reports_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setattr(memory.sys, "platform", "linux")
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *_: (_ for _ in ()).throw(OSError("no libc")))
    assert memory.keep_freed_memory() is False
