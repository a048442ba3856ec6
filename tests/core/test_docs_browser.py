"""The API docs render in a real browser on a network without internet.

A headless Chromium (Debian's, which .ci/run installs; ``SUIFANG_TEST_BROWSER`` names it) loads
``/docs`` and ``/redoc`` from a real ``suifang api`` while every request to another host is
refused, as a hospital's closed network would: the pages must draw their operations, not a
blank screen. Without a browser on the machine the test is skipped, unless
``SUIFANG_TEST_BROWSER`` is set (CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from suifang.core.embedded import free_port

BROWSER_ENV = "SUIFANG_TEST_BROWSER"
# As the machine's notes advise: no background calls home, which a closed network refuses.
_CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.slow]


def _browser() -> str:
    named = os.environ.get(BROWSER_ENV)
    if named:
        if not Path(named).exists():
            pytest.fail(f"{BROWSER_ENV}={named}: no such browser (.ci/run installs chromium)")
        return named
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(f"no Chromium here; CI installs it and sets {BROWSER_ENV}")
    return found


@pytest.fixture
def api(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "SUIFANG_DATA_DIR": str(tmp_path / "var"),
        "SUIFANG_DATABASE_URL": "",
        "SUIFANG_API_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "suifang.core.cli", "api"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_swagger_ui_and_redoc_render_with_no_internet(api: str, tmp_path: Path) -> None:
    from playwright.sync_api import Route, sync_playwright

    local = urlsplit(api).netloc
    refused: list[str] = []

    def closed_network(route: Route) -> None:
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_browser(), args=_CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", closed_network)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            page.goto(f"{api}/docs")
            page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
            operations = page.locator(".swagger-ui .opblock").count()
            assert operations >= 50, operations
            assert page.locator(".swagger-ui .btn.authorize").count() == 1  # bearer scheme
            assert "Register a discharge" in page.content()
            page.screenshot(path=str(tmp_path / "docs.png"))

            page.goto(f"{api}/redoc")
            page.wait_for_selector("[data-section-id]", timeout=30_000)
            assert page.locator("[data-section-id]").count() >= 50
            assert "Register a discharge" in page.inner_text("body")
        finally:
            browser.close()
    assert refused == [], f"the docs asked the internet for {refused}"
    assert errors == [], errors
