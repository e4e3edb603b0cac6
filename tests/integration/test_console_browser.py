"""The console in headless Chromium (Playwright for Python driving Debian's `chromium` by
its executable path; issue 13): an operator logs in, finds a device, creates an event from
the form (after a validation message), cancels it, sees the capacity plot drawn with data; a
viewer walks every page, has no event form, and a form post without its CSRF token is
refused. A screenshot of each page is saved under $CSIP_TEST_ARTIFACTS (default
test-artifacts/)/console.

Skipped, with the reason, when Playwright or Chromium is missing, unless
CSIP_REQUIRE_BROWSER is set (.ci/run sets it after installing chromium)."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from csip.services.admin import PreRegistration
from csip.services.demo import BATTERY_KW, load_into

from support import Running

CHROMIUM = os.environ.get("CSIP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("CSIP_TEST_ARTIFACTS", "test-artifacts")) / "console"
#: The README's screenshots, rewritten by `CSIP_UPDATE_SCREENSHOTS=1` (make screenshots).
README_SHOTS = Path(__file__).resolve().parents[1] / "data" / "console"
#: page -> the height shown (the capacity page down to its requested-vs-delivered table).
README_PAGES = {"fleet": 800, "programs": 900, "capacity": 1300}
README_WIDTH, README_MAX_BYTES = 1200, 150_000
PNGQUANT = shutil.which("pngquant")
PASSWORD = "correct horse battery"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CSIP_CHROMIUM)"
    return None


REASON = _missing()
if REASON and os.environ.get("CSIP_REQUIRE_BROWSER"):
    raise RuntimeError(f"browser tests required but cannot run: {REASON}")
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


async def _browser() -> Any:
    from playwright.async_api import async_playwright

    driver = await async_playwright().start()
    browser = await driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    return driver, browser


async def _login(page: Any, base: str, name: str) -> None:
    await page.goto(base + "/console/")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form.login button[type=submit]")
    await page.wait_for_url("**/console/fleet")


async def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _setup(srv: Running) -> None:
    app = srv.server.app
    assert app is not None
    await app.admin.preregister([PreRegistration(srv.pki.device_a.lfdi)])
    await load_into(app, 12, extra_lfdis=[srv.pki.device_a.lfdi])
    await app.operators.add("alice", "operator", PASSWORD)
    await app.operators.add("victor", "viewer", PASSWORD)


async def test_an_operator_walks_the_console(srv: Running) -> None:
    await _setup(srv)
    app = srv.server.app
    assert app is not None
    driver, browser = await _browser()
    try:
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await _login(page, srv.admin_base, "alice")
        await _shot(page, "fleet")
        # find a device by searching its lFDI
        lfdi = srv.pki.device_a.lfdi
        await page.fill("input[name=q]", lfdi[:10])
        await page.click("form.filters button[type=submit]")
        assert await page.locator("table.fleet tbody tr").count() == 1
        await page.click("a.device")
        await page.wait_for_url(f"**/console/devices/{lfdi}")
        assert lfdi in await page.inner_text("h1")
        # a simulated battery's page plots its readings
        await page.goto(srv.admin_base + "/console/fleet?oem=SunVolt")
        await page.click("a.device >> nth=0")
        await page.wait_for_url("**/console/devices/*")
        assert await page.locator("svg.plot polyline.series").count() == 2  # W and SoC
        await _shot(page, "device")

        # create an event: first a mistake, then right
        await page.goto(srv.admin_base + "/console/programs")
        await _shot(page, "programs")
        await page.fill("input[name=name]", "browser peak")
        await page.fill("input[name=start]", "next tuesday")
        await page.click("form.event-form button[type=submit]")
        assert "UTC date and time" in await page.inner_text("#problem")
        start = datetime.fromtimestamp(app.clock.now_int() + 3 * 3600, UTC)
        await page.fill("input[name=start]", start.strftime("%Y-%m-%dT%H:%M"))
        await page.check("input[name=targets][value=feeder-north]")
        await page.click("form.event-form button[type=submit]")
        await page.wait_for_url("**/console/events/*")
        assert await page.inner_text("#event-status") == "scheduled"
        await _shot(page, "event")
        await page.click("form.cancel button")
        await page.wait_for_url("**/console/events/*")
        assert await page.inner_text("#event-status") == "cancelled"

        await page.goto(srv.admin_base + "/console/capacity")
        assert await page.locator(".plots.capacity svg.plot polyline.series").count() == 2
        assert "kW for an hour" in await page.inner_text("#capacity-now")
        # the battery event: requested beside delivered, plotted and tabled
        assert await page.locator("#delivery svg.plot polyline.series").count() == 2
        assert "battery dispatch" in await page.inner_text("#delivery h3")
        requested = await page.locator("#delivery td.requested").all_inner_texts()
        assert requested == [f"{kw * 2:.1f}" for kw in BATTERY_KW]
        await _shot(page, "capacity")
        for name in ("conformance", "vtn", "audit"):
            await page.goto(f"{srv.admin_base}/console/{name}")
            await _shot(page, name)
        assert "event.cancel" in await page.inner_text("table.audit")
    finally:
        await browser.close()
        await driver.stop()


async def test_a_viewer_reads_but_cannot_post(srv: Running) -> None:
    await _setup(srv)
    driver, browser = await _browser()
    try:
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await _login(page, srv.admin_base, "victor")
        for name in ("fleet", "programs", "capacity", "conformance", "vtn", "audit"):
            response = await page.goto(f"{srv.admin_base}/console/{name}")
            assert response is not None and response.status == 200, name
            await _shot(page, f"viewer-{name}")
        await page.goto(srv.admin_base + "/console/programs")
        assert await page.locator("form.event-form").count() == 0
        # the viewer's own session posting a form with its token: refused
        csrf = await page.locator("form.logout input[name=csrf]").get_attribute("value")
        refused = await page.request.post(
            srv.admin_base + "/console/events", form={"csrf": csrf or "", "program": "x"}
        )
        assert refused.status == 403
        assert "viewer" in await refused.text()
        # and a form without its token, whoever sends it
        missing = await page.request.post(srv.admin_base + "/console/events", form={"program": "x"})
        assert missing.status == 403
        assert "CSRF" in await missing.text()
    finally:
        await browser.close()
        await driver.stop()


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


async def test_the_readme_screenshots(srv: Running) -> None:
    """The fleet, timeline and capacity pages with `csip demo`'s data, as the README shows
    them: taken every run (test artifacts); written to tests/data/console/ when
    CSIP_UPDATE_SCREENSHOTS is set; the committed ones must exist and stay small."""
    app = srv.server.app
    assert app is not None
    await load_into(app, 50)
    await app.operators.add("alice", "operator", PASSWORD)
    update = bool(os.environ.get("CSIP_UPDATE_SCREENSHOTS"))
    if update and PNGQUANT is None:
        pytest.fail("CSIP_UPDATE_SCREENSHOTS needs pngquant to keep the PNGs small")
    driver, browser = await _browser()
    try:
        page = await browser.new_page(
            viewport={"width": README_WIDTH, "height": 900}, device_scale_factor=1
        )
        await _login(page, srv.admin_base, "alice")
        for name, height in README_PAGES.items():
            await page.goto(f"{srv.admin_base}/console/{name}")
            assert await page.locator("svg.plot, svg.timeline, table").count() > 0
            target = (README_SHOTS if update else ARTIFACTS) / f"readme-{name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            clip = {"x": 0, "y": 0, "width": README_WIDTH, "height": height}
            await page.screenshot(path=str(target), full_page=True, clip=clip)
            if update:
                assert PNGQUANT is not None
                quant = await asyncio.create_subprocess_exec(
                    *(PNGQUANT, "--quality", "70-95", "--speed", "1", "--strip", "-f"),
                    *("--output", str(target), str(target)),
                )
                assert await quant.wait() == 0, "pngquant failed"
    finally:
        await browser.close()
        await driver.stop()
    for name, height in README_PAGES.items():
        committed = README_SHOTS / f"readme-{name}.png"
        assert committed.is_file(), f"{committed} missing: run make screenshots"
        width, shown = _png_size(committed)
        assert width == README_WIDTH and shown <= height
        assert committed.stat().st_size < README_MAX_BYTES, f"{committed} is too large"
