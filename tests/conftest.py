"""Shared test helpers."""

import contextlib
import os
import shutil
import tempfile

import pytest

from iadtutor.tools import book


def chromium_executable() -> str:
    """Path of Debian's Chromium (or ``$IADTUTOR_CHROMIUM``); skips the test with the reason if absent."""
    path = os.environ.get("IADTUTOR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Chromium is not installed: run `make browser` (scripts/install_chromium.sh).")
    return path


@contextlib.contextmanager
def chromium_context(width: int, timeout_ms: int):
    """A Playwright browser context on a fresh headless Chromium profile, removed afterwards.

    Skips the test (with the reason) when playwright or Chromium is missing or Chromium cannot start.
    """
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    executable = chromium_executable()
    profile = tempfile.mkdtemp(prefix="iadtutor-chromium-")
    try:
        with sync_api.sync_playwright() as playwright:
            try:
                context = playwright.chromium.launch_persistent_context(
                    profile, executable_path=executable, headless=True, args=list(book.CHROMIUM_FLAGS),
                    viewport={"width": width, "height": 900}, timeout=timeout_ms)
            except sync_api.Error as error:
                pytest.skip(f"Chromium at {executable} could not be started: {str(error).splitlines()[0]}")
            context.set_default_timeout(timeout_ms)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
