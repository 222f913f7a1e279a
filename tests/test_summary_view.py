"""The summary page as a site owner sees it in Chromium, at desktop and phone sizes, logged in and through a share link.

One server and one browser for the module; each check reuses its page. What is asserted is what a person reads: the
numbers that were sent with their share, hover and focus tooltips on the chart, no sideways scrolling, a page that fits
in 6,000 px on a phone, and axe-core finding nothing serious.
"""

from __future__ import annotations

import collections
import csv
import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import collector
import conftest
import footfall.cli
import footfall.upkeep
from conftest import CHROME, FIREFOX, LiveServer, rows

pytestmark = pytest.mark.slow

PASSWORD = "a long and good password"
SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
LONG_PAGE = "/blog/2026/05/a-very-long-article-title-that-keeps-going-and-going-until-it-no-longer-fits-on-a-phone"
PAGES = ["/", "/pricing", "/docs/getting-started", LONG_PAGE, "/about"]
REFERRERS = [None, "https://www.google.com/search?q=x", "https://news.example/item?id=1", None, "https://social.example/p"]
COUNTRIES = ["DE", "US", "FR", "GB", "NL", "DE", "US"]
AGENTS = [FIREFOX, CHROME, SAFARI_IOS]
#: Where screenshots go (FOOTFALL_SHOTS=/some/dir keeps them for a person to look at).
SHOTS = os.environ.get("FOOTFALL_SHOTS")


class Sent:
    """What the module sent: pageviews per path, visits per referrer, and the totals."""

    def __init__(self) -> None:
        self.pages: collections.Counter[str] = collections.Counter()
        self.referrers: collections.Counter[str] = collections.Counter()
        self.visits = 0
        self.signups = 0
        self.signup_visitors = 0


def send_traffic(server: LiveServer, website: str) -> Sent:
    """42 visitors over the last 6 days (one visit each, 1–4 pages), some signing up, some reporting web vitals."""
    sent = Sent()
    now = int(time.time())
    with httpx.Client(base_url=server.url) as http:

        def post(kind: str, headers: dict[str, str], **payload: Any) -> None:
            body = {"type": kind, "payload": {"website": website, "hostname": "site.example", **payload}}
            response = http.post("/api/send", json=body, headers=headers)
            assert response.status_code == 200, response.text

        for i in range(42):
            headers = {
                "user-agent": AGENTS[i % 3],
                "x-forwarded-for": f"203.0.113.{i + 1}",
                "cf-ipcountry": COUNTRIES[i % len(COUNTRIES)],
            }
            start = now - 240 if i < 2 else now - 3600 - i * 3 * 3600  # two people on the site right now
            referrer = REFERRERS[i % len(REFERRERS)]
            sent.visits += 1
            sent.referrers[httpx.URL(referrer).host.removeprefix("www.") if referrer else "Direct / none"] += 1
            for n in range(1 + i % 4):
                path = PAGES[(i + n) % len(PAGES)]
                extra = {"referrer": referrer} if n == 0 and referrer else {}
                post("event", headers, url=f"https://site.example{path}", timestamp=start + n * 30, **extra)
                sent.pages[path] += 1
            if i % 5 == 0:
                post("event", headers, url="https://site.example/pricing", timestamp=start + 200, name="signup",
                     data={"plan": ["free", "pro"][i % 2]})  # fmt: skip
                sent.signups += 1
                sent.signup_visitors += 1
            if i % 6 == 0:
                post("performance", headers, url=f"https://site.example{PAGES[i % len(PAGES)]}", timestamp=start + 5,
                     lcp=1200 + 300 * i, inp=80 + 20 * i, cls=0.01 * i, fcp=700 + 50 * i, ttfb=90 + 10 * i)  # fmt: skip
    return sent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db_path = tmp_path_factory.mktemp("view") / "footfall.db"
    collector.prepare_database(str(db_path))
    server = LiveServer(db_path, "--timezone", "Europe/Berlin")
    conftest._LIVE_SERVERS.remove(server)  # it serves the whole module; this fixture stops it
    try:
        website = rows(db_path, "SELECT website_id FROM website WHERE name = 'default'")[0][0]
        sent = send_traffic(server, website)
        share = CliRunner().invoke(
            footfall.cli.cli, ["site", "share", website, "--db", str(db_path), "--base-url", server.url]
        )
        assert share.exit_code == 0, share.output
        result = CliRunner().invoke(footfall.cli.cli, ["password", "--stdin", "--db", str(db_path)], input=PASSWORD + "\n")
        assert result.exit_code == 0, result.output
        time.sleep(footfall.upkeep.TICK_SECONDS + 0.5)  # the server reloads the password in its upkeep round
        yield {"server": server, "website": website, "sent": sent, "share": share.output.strip()}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def logged_in(browser: Any, site: dict[str, Any]) -> dict[str, Any]:
    """A storage state with the login cookie (logged in once, through the form)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(site["server"].url + "/")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    state = context.storage_state()
    context.close()
    return state  # type: ignore[no-any-return]


def panel_rows(page: Any, panel: str) -> list[tuple[str, str, str]]:
    """(label, count, share) as shown in one list panel."""
    cells = page.locator(f"#panel-{panel} tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    return [(c[0], c[1], c[2]) for c in cells]


def expected(counter: collections.Counter[str], total: int) -> list[tuple[str, str, str]]:
    ordered = sorted(counter.items(), key=lambda item: (-item[1], item[0] == "Direct / none", item[0]))
    return [(label, f"{n:,}", f"{n / total * 100:.0f}%") for label, n in ordered[:10]]


VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.mark.parametrize("access", ["login", "share"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_page_reads_right(browser: Any, site: dict[str, Any], logged_in: dict[str, Any], size: str, access: str) -> None:
    """The numbers sent appear with their share; nothing sticks out sideways; the chart answers hover and focus; axe-core
    finds no serious or critical problem; on a phone the whole page is at most 6,000 px tall."""
    from axe_playwright_python.sync_playwright import Axe

    viewport = VIEWPORTS[size]
    context = browser.new_context(
        viewport=viewport, storage_state=logged_in if access == "login" else None, has_touch=size == "phone"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    url = (site["server"].url + "/" if access == "login" else site["share"]) + "?period=7d"
    page.goto(url)
    sent: Sent = site["sent"]
    total_pageviews = sum(sent.pages.values())

    assert page.locator("h1").count() == 1 and page.locator("main").count() == 1
    assert page.locator('.card[data-metric="Pageviews"] .value').inner_text() == f"{total_pageviews:,}"
    assert page.locator('.card[data-metric="Visits"] .value').inner_text() == f"{sent.visits:,}"
    assert panel_rows(page, "page") == expected(sent.pages, total_pageviews)
    assert panel_rows(page, "referrer") == expected(sent.referrers, sent.visits)
    goal = page.locator("#panel-events tbody tr").first.evaluate("r => [...r.cells].map(c => c.innerText.trim())")
    assert goal[1:] == [str(sent.signups), str(sent.signup_visitors), f"{sent.signup_visitors / sent.visits * 100:.0f}%"]
    assert "plan" in goal[0] and "free" in goal[0] and "pro" in goal[0]
    assert page.locator("#realtime-visitors").inner_text() == "2"
    body = page.locator("body").inner_text()
    assert not re.search(r"<built-in|object at 0x|\{'|Undefined|None\b", body), body
    assert "good" in page.locator("#panel-vitals").inner_text()  # ratings in words, not colour only

    # Long values are cut with an ellipsis and keep the full value in their title.
    long_link = page.locator(f'#panel-page a[title="{LONG_PAGE}"]')
    assert long_link.evaluate("a => a.scrollWidth > a.clientWidth") and long_link.inner_text() == LONG_PAGE

    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    height = page.evaluate("document.documentElement.scrollHeight")
    if size == "phone":
        assert height <= 6000, height

    # Every bar has its numbers: a <title>, a tooltip on hover and on focus (keyboard or touch).
    plot = page.locator(".chart svg.plot:visible")
    bars = plot.locator("g.point")
    assert bars.count() == 7
    last = bars.nth(6)
    assert re.fullmatch(r".+: [0-9,]+ pageviews?, [0-9,]+ visitors?", last.get_attribute("aria-label") or "")
    tip = last.locator(".tip")
    assert not tip.is_visible()
    if size == "phone":
        last.locator(".hit").tap()
    else:
        last.locator(".hit").hover()
    assert tip.is_visible() and "pageview" in (tip.text_content() or "")
    page.mouse.move(0, 0)
    bars.nth(5).focus()
    assert bars.nth(5).locator(".tip").is_visible()
    table = page.locator("#chart-data tbody tr")
    assert table.count() == 7  # the chart as a table, for screen readers

    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/summary-{size}-{access}.png", full_page=True)

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in bad]
    assert errors == []
    context.close()


def test_show_all_csv_and_the_filtered_right_now(browser: Any, site: dict[str, Any], logged_in: dict[str, Any]) -> None:
    """'Show all' opens the whole list; each CSV link returns that panel's numbers; a filter narrows 'Right now'."""
    context = browser.new_context(viewport=VIEWPORTS["desktop"], storage_state=logged_in)
    page = context.new_page()
    page.goto(site["server"].url + "/?period=7d")
    shown = panel_rows(page, "referrer")
    href = page.locator("#panel-referrer a.csv").get_attribute("href")
    csv_text = page.request.get(site["server"].url + href)
    assert csv_text.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(csv_text.text())))
    assert lines[0] == ["referrer", "visits", "share"]
    assert [(label, count, f"{float(share) * 100:.0f}%") for label, count, share in lines[1:]] == shown
    page.click("#panel-page a:has-text('/pricing')")
    assert page.locator("#realtime-visitors").inner_text() in ("0", "1", "2")
    filtered_now = int(page.locator("#realtime-visitors").inner_text())
    assert filtered_now == sum(1 for i in range(2) if "/pricing" in [PAGES[(i + n) % len(PAGES)] for n in range(1 + i % 4)])
    context.close()
