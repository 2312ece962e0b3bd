"""Debian's Chromium under Playwright for the browser tests (never a browser Playwright downloads).

`require_browser(needs)` skips the calling test module when Chromium, Playwright or one of
`needs` is missing — except where a browser is required (.ci/run sets TWO4TWO_REQUIRE_BROWSER=1),
where it fails instead. `launch()` starts headless Chromium with the flags a closed network needs.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]
ROOT = Path(__file__).resolve().parents[1]


def artifacts(name: str) -> Path:
    """Where a test's screenshots go: test-artifacts/NAME (TWO4TWO_ARTIFACTS overrides the root)."""
    return Path(os.environ.get("TWO4TWO_ARTIFACTS", ROOT / "test-artifacts")) / name


def _missing(reason: str) -> None:
    if os.environ.get("TWO4TWO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, but TWO4TWO_REQUIRE_BROWSER=1", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_browser(needs: dict[str, str]) -> None:
    """Skip (or fail, where required) unless Chromium, Playwright and every module of `needs` (name → install hint) are here."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (Debian: apt-get install chromium; .ci/run installs it)")
    for name, hint in {"playwright.sync_api": "pip install -e '.[dev]'", **needs}.items():
        try:
            importlib.import_module(name)
        except ImportError:
            _missing(f"{name} is missing ({hint})")


@contextlib.contextmanager
def launch():
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
