"""The fork-server's builtins guard: restores the builtins when a program changed them, and on
this CPython it can tell (from the dict's version tag) when they were left alone."""

from __future__ import annotations

import builtins

from services.executor.sandbox_child import BuiltinsGuard


def test_guard_reads_the_version_tag_here() -> None:
    assert BuiltinsGuard().cheap


def test_guard_restores_a_patched_builtin() -> None:
    guard = BuiltinsGuard()
    real_len = builtins.len
    try:
        builtins.len = lambda obj: -1
        guard.restore()
        assert builtins.len is real_len
        assert len([1, 2]) == 2
    finally:
        builtins.len = real_len


def test_guard_restores_a_deleted_or_added_name() -> None:
    guard = BuiltinsGuard()
    real_abs = builtins.abs
    try:
        del builtins.abs
        builtins.__dict__["azr_extra"] = 1
        guard.restore()
        assert builtins.abs is real_abs
    finally:
        builtins.abs = real_abs
        builtins.__dict__.pop("azr_extra", None)
