"""The summary page in a real headless Chromium: log in, switch period, filter by a click, and hostile data stays text."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

import collector
import footfall.upkeep
import footfall.cli
from conftest import CHROME, FIREFOX, LiveServer, rows

pytestmark = pytest.mark.slow

PASSWORD = "a long and good password"


@pytest.fixture
def server(db_path: Path) -> Iterator[LiveServer]:
    collector.prepare_database(str(db_path))
    live = LiveServer(db_path, "--timezone", "Europe/Berlin", "--cdn-geo", "cloudflare")
    yield live
    live.stop()


def website_of(db_path: Path) -> str:
    return rows(db_path, "SELECT website_id FROM website WHERE name = 'default'")[0][0]


def send(server: LiveServer, website: str, visitors: list[tuple[str, str, str, list[str]]]) -> None:
    """Pageviews from (ip, user agent, country, paths) visitors over the last hour, through a 'proxy' on 127.0.0.1."""
    now = int(time.time())
    with httpx.Client(base_url=server.url) as http:
        for ip, agent, country, paths in visitors:
            for offset, path in enumerate(paths):
                body = {
                    "type": "event",
                    "payload": {
                        "website": website,
                        "url": f"https://site.example{path}",
                        "timestamp": now - 240 + offset * 60,
                        "hostname": "site.example",
                    },
                }
                response = http.post(
                    "/api/send", json=body, headers={"user-agent": agent, "x-forwarded-for": ip, "cf-ipcountry": country}
                )
                assert response.status_code == 200, response.text


def watch(page: Any) -> dict[str, list[str]]:
    """Collect what must never happen on the page: dialogs, console errors, script errors, requests to other hosts."""
    seen: dict[str, list[str]] = {"dialogs": [], "console": [], "errors": [], "foreign": []}

    def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda msg: seen["console"].append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    page.on("request", lambda req: seen["foreign"].append(req.url) if not req.url.startswith("http://127.0.0.1:") else None)
    return seen


def headline(page: Any, label: str) -> str:
    return page.locator(f'.card[data-metric="{label}"] .value').inner_text()


def test_log_in_switch_period_filter_and_screenshot(browser: Any, server: LiveServer, db_path: Path, tmp_path: Path) -> None:
    """A person logs in, sees today's traffic, switches to 7 days, clicks a country, and sees the filtered numbers."""
    website = website_of(db_path)
    send(
        server,
        website,
        [
            ("203.0.113.1", FIREFOX, "DE", ["/", "/pricing", "/docs"]),
            ("203.0.113.2", CHROME, "DE", ["/"]),
            ("198.51.100.3", CHROME, "US", ["/", "/blog"]),
        ],
    )
    result = CliRunner().invoke(footfall.cli.cli, ["password", "--stdin", "--db", str(db_path)], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    time.sleep(footfall.upkeep.TICK_SECONDS + 0.5)  # the server reloads the password in its upkeep round

    context = browser.new_context(viewport={"width": 1280, "height": 1800})
    page = context.new_page()
    seen = watch(page)
    page.goto(server.url + "/?period=24h")
    assert urlsplit(page.url).path == "/login"
    page.fill("#password", "not it at all")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "Wrong password."
    assert seen["console"] == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"]
    seen["console"].clear()
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    assert urlsplit(page.url).path == "/" and parse_qs(urlsplit(page.url).query) == {"period": ["24h"]}
    assert page.locator('nav.periods a[aria-current="page"]').inner_text() == "Last 24 hours"
    assert (headline(page, "Visitors"), headline(page, "Visits"), headline(page, "Pageviews")) == ("3", "3", "6")
    assert headline(page, "Bounce rate") == "33%"
    assert page.locator("#realtime-visitors").inner_text() == "3"

    page.click("nav.periods >> text=Last 7 days")
    assert parse_qs(urlsplit(page.url).query)["period"] == ["7d"]
    assert page.locator("#period-label").inner_text() == "Last 7 days"
    assert page.locator(".chart svg.plot:visible g.point").count() == 7
    assert headline(page, "Pageviews") == "6"

    page.click("#panel-country a:has-text('Germany')")
    assert parse_qs(urlsplit(page.url).query) == {"period": ["7d"], "country": ["DE"]}
    assert page.locator(".filters .chip").inner_text().startswith("Country: Germany")
    assert (headline(page, "Visitors"), headline(page, "Pageviews")) == ("2", "4")
    assert page.locator("#panel-browser td a").all_inner_texts() == ["Chrome", "Firefox"]
    api = page.request.get(server.url + f"/api/summary?website={website}&period=7d&country=DE").json()
    assert api["totals"]["pageviews"]["value"] == 4 and api["totals"]["visitors"]["value"] == 2

    page.click(".filters .chip")  # remove the filter
    assert headline(page, "Pageviews") == "6"
    shot = tmp_path / "summary.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    assert seen == {"dialogs": [], "console": [], "errors": [], "foreign": []}

    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, color_scheme="dark", storage_state=context.storage_state()
    )
    small = phone.new_page()
    small.goto(server.url + "/?period=7d")
    assert headline(small, "Pageviews") == "6"
    assert small.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways on a phone
    dark = small.evaluate("getComputedStyle(document.body).backgroundColor")
    small.screenshot(path=str(tmp_path / "phone-dark.png"), full_page=True)
    phone.close()
    assert dark != page.evaluate("getComputedStyle(document.body).backgroundColor")  # prefers-color-scheme: dark

    page.click("text=Log out")
    assert urlsplit(page.url).path == "/login"
    page.goto(server.url + "/")
    assert urlsplit(page.url).path == "/login"
    context.close()


HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'><svg onload=alert(3)>",
    "javascript:alert(4)",
    "</title><script>alert(5)</script>",
    '{{ 7*7 }}<iframe src="javascript:alert(6)">',
]


def test_hostile_data_is_shown_as_text(browser: Any, server: LiveServer, db_path: Path, tmp_path: Path) -> None:
    """URLs, referrers, UTM values, event names and data keys full of markup appear as text; no script ever runs."""
    website = website_of(db_path)
    now = int(time.time())
    with httpx.Client(base_url=server.url) as http:
        for i, evil in enumerate(HOSTILE):
            quoted = httpx.URL("https://site.example/").copy_with(
                path="/" + evil, params={"utm_source": evil, "utm_campaign": evil}
            )
            for kind, extra in (("event", {}), ("event", {"name": evil, "data": {evil: evil}})):
                body = {
                    "type": kind,
                    "payload": {
                        "website": website,
                        "url": str(quoted),
                        "referrer": f"https://x{i}.example/{evil}",
                        "title": evil,
                        "language": evil[:35],
                        "timestamp": now - 60,
                        "browser": evil[:20],
                        "os": evil[:20],
                        "device": evil[:20],
                        "screen": "<i>x</i>",
                        "hostname": "site.example",
                        **extra,
                    },
                }
                response = http.post(
                    "/api/send", json=body, headers={"user-agent": FIREFOX, "x-forwarded-for": f"203.0.113.{i + 1}"}
                )
                assert response.status_code == 200, response.text
    share = CliRunner().invoke(footfall.cli.cli, ["site", "share", website, "--db", str(db_path), "--base-url", server.url])
    page = browser.new_context().new_page()
    seen = watch(page)
    for url in (
        server.url + "/?period=24h",
        share.output.strip() + "?period=24h",
    ):  # loopback, no password yet; the share page
        page.goto(url)
        text = page.locator("body").inner_text()
        for evil in HOSTILE:
            assert "/" + evil in text, evil  # the page path, as text
            for panel in ("utm_source", "utm_campaign", "events", "language"):
                assert evil[:35] in page.locator(f"#panel-{panel}").inner_text(), (panel, evil)
            for panel in ("browser", "os", "device"):  # devices are shown capitalised
                assert evil[:20].lower() in page.locator(f"#panel-{panel}").inner_text().lower(), (panel, evil)
        assert "<i>x</i>" in page.locator("#panel-screen").inner_text()
        assert page.locator("body script, body iframe, body img, main i, td i, svg[onload]").count() == 0
    page.click(f"#panel-events a:has-text('{HOSTILE[1]}')")  # a filter whose value is markup
    assert HOSTILE[1] in page.locator(".filters").inner_text()
    assert headline(page, "Visits") == "1"
    page.screenshot(path=str(tmp_path / "hostile.png"), full_page=True)
    assert seen == {"dialogs": [], "console": [], "errors": [], "foreign": []}
