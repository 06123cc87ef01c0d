"""Browser tests: a live server on loopback with a real database, and Debian's Chromium.

Why a live server: the page must talk to the real application over HTTP exactly as a
microscopist's browser does (static files, uploads, image responses, ETags).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.needs import unavailable
from tests.service.live import live_server as run_live_server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """A fresh server (own data dir, own SQLite database) for one test."""
    with run_live_server(tmp_path / "data") as base:
        yield base


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start servers with Settings overrides (token, limits); all stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(name: str = "data", **overrides: Any) -> str:
            return stack.enter_context(run_live_server(tmp_path / name, **overrides))

        yield start


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} missing: install Debian's chromium (scripts/ensure-chromium.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh laptop-sized page; page errors and Content-Security-Policy violations fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[Any] = []
    page.on("pageerror", lambda exc: errors.append(exc))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots go to test-artifacts/ at the repo root (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
