"""memory.release_free_memory: serve gives glibc's free heap pages back once it has started
(issue 17); where the C library has no malloc_trim it does nothing, and says so."""

from __future__ import annotations

import ctypes
import platform

import pytest

from exporter.memory import release_free_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_on_glibc_it_trims():
    assert release_free_memory() is True


def test_without_malloc_trim_it_does_nothing(monkeypatch):
    class NoTrim:
        def __init__(self, name):
            pass

        def __getattr__(self, name):
            raise AttributeError(name)  # musl, macOS: no such symbol

    monkeypatch.setattr(ctypes, "CDLL", NoTrim)
    assert release_free_memory() is False
