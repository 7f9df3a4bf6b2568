"""The one rule for missing system programs (tests/binaries.py): a failure under CI=true, elsewhere a skip that
says how to install the program."""

from __future__ import annotations

import sys

import pytest

from tests.binaries import require_binary

MISSING = "modeltel-no-such-program"


def test_a_missing_program_skips_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="sudo apt-get install some-package \\(or make system\\)"):
        require_binary(MISSING, package="some-package")


@pytest.mark.parametrize("ci", ["true", "TRUE"])
def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=f"CI=true and {MISSING} is not installed: sudo apt-get install"):
        require_binary(MISSING, package="some-package")


def test_the_first_program_found_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_binary(MISSING, sys.executable, package="python3") == sys.executable
