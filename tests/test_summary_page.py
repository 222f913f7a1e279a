"""The summary page as a person reads it: every list shows the labels and numbers that were sent, never a Python repr."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import collector
import footfall.app
from conftest import CHROME, FIREFOX, Clock, flush, open_client

pytestmark = pytest.mark.anyio

NOW = dt.datetime(2026, 5, 14, 20, 0, tzinfo=dt.timezone.utc).timestamp()
#: Text that only a Python object printed into the page produces.
REPRS = re.compile(r"<built-in|<bound method|<function |object at 0x|\{'|\[\('|dict_keys\(|Undefined")


class PanelText(HTMLParser):
    """The text of each table row, per ``<section id="panel-…">``: {panel id: [[cell text, …], …]}."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: dict[str, list[list[str]]] = {}
        self._stack: list[str | None] = []
        self._panel: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            ident = dict(attrs).get("id") or ""
            self._stack.append(self._panel)
            if ident.startswith("panel-"):
                self._panel = ident.removeprefix("panel-")
                self.panels.setdefault(self._panel, [])
        elif tag == "tr" and self._panel is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self._stack:
            self._panel = self._stack.pop()
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._panel is not None:
            if self._row:
                self.panels[self._panel].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


async def send(client, website: str, path: str, agent: str, ip: str, country: str, **payload) -> None:  # type: ignore[no-untyped-def]
    body = {"type": "event", "payload": {"website": website, "url": f"https://site.example{path}", **payload}}
    headers = {"user-agent": agent, "x-forwarded-for": ip, "cf-ipcountry": country}
    response = await client.post("/api/send", json=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_every_list_shows_what_was_sent(db_path: Path, website: str) -> None:
    """Pages, sources, audience and custom events (with their data keys) read as sent, with counts; no repr anywhere."""
    config = collector.Config(db=str(db_path), embedded_geo=False, cdn_geo="cloudflare")
    async with open_client(footfall.app.create_app(config, Clock(NOW))) as client:
        at = int(NOW) - 3600
        # Visitor 1 (Firefox, DE, from a newsletter): /pricing twice and a signup with data.
        for i, path in enumerate(("/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=may", "/pricing")):
            await send(client, website, path, FIREFOX, "203.0.113.1", "DE", timestamp=at + i * 60,
                       referrer="https://www.news.example/a", language="de-DE", screen="1920x1080")  # fmt: skip
        await send(client, website, "/pricing", FIREFOX, "203.0.113.1", "DE", timestamp=at + 180, name="signup",
                   data={"plan": "pro", "seats": 3}, language="de-DE", screen="1920x1080")  # fmt: skip
        # Visitor 2 (Chrome, FR, direct): the home page once.
        await send(
            client, website, "/", CHROME, "198.51.100.7", "FR", timestamp=at + 300, language="fr-FR", screen="2560x1440"
        )
        await flush(client)
        response = await client.get("/", params={"period": "24h", "website": website})
    assert response.status_code == 200
    page = response.text
    assert not REPRS.search(page), REPRS.search(page)
    parser = PanelText()
    parser.feed(page)
    panels = {name: rows for name, rows in parser.panels.items()}

    def rows(panel: str) -> list[tuple[str, ...]]:
        """(label, count, share) of each data row: the header row and empty rows left out."""
        return [tuple(row) for row in panels[panel] if len(row) >= 3 and row[1][:1].isdigit()]

    # Every count is shown with its share: of all pageviews for pages, of all visits (2) for the rest.
    assert rows("page") == [("/pricing", "2", "67%"), ("/", "1", "33%")]  # the signup is a custom event, not a pageview
    assert rows("entry") == [("/", "1", "50%"), ("/pricing", "1", "50%")]
    assert rows("exit") == [("/", "1", "50%"), ("/pricing", "1", "50%")]
    assert rows("referrer") == [("news.example", "1", "50%"), ("Direct / none", "1", "50%")]  # visitor 2 came direct
    assert rows("utm_source") == [("newsletter", "1", "50%")]
    assert rows("utm_medium") == [("email", "1", "50%")]
    assert rows("utm_campaign") == [("may", "1", "50%")]
    assert rows("country") == [("DE", "1", "50%"), ("FR", "1", "50%")]  # no geo data: codes, not names
    assert rows("browser") == [("Chrome", "1", "50%"), ("Firefox", "1", "50%")]
    assert rows("language") == [("de-DE", "1", "50%"), ("fr-FR", "1", "50%")]
    assert rows("screen") == [("1920x1080", "1", "50%"), ("2560x1440", "1", "50%")]
    # The goal: count, unique visitors, conversion (1 of 2 visitors); its data keys with their values.
    ((signup, count, visitors, conversion),) = rows("events")
    assert (count, visitors, conversion) == ("1", "1", "50%")
    assert signup.startswith("signup") and "plan (1): pro 1" in signup and "seats (1): " in signup, signup
    assert rows("realtime") == []  # an hour ago: nobody is on the site now
    text = " ".join(re.sub(r"<[^>]+>", "", page).split())
    assert "0 visitors in the last 5 minutes" in text
    assert not re.search(r"\b1 (visitors|pageviews|bot requests)\b", text)  # plural forms
    assert re.search(r"19:00–20:00: 3 pageviews, 2 visitors\b", page)  # the chart bar of the hour they came in


async def test_show_all_csv_and_compression(db_path: Path, website: str) -> None:
    """A list of 12 pages shows 10 and a 'Show all' link to all 12; CSV links give the page's numbers; pages, JSON and CSV
    come gzipped when asked (and the collection routes never are)."""
    config = collector.Config(db=str(db_path), embedded_geo=False)
    async with open_client(footfall.app.create_app(config, Clock(NOW))) as client:
        at = int(NOW) - 3600
        for i in range(12):
            for n in range(12 - i):  # page i gets 12 - i pageviews, from visitor i
                await send(client, website, f"/page-{i:02d}", FIREFOX, f"203.0.113.{i + 1}", "DE", timestamp=at + n)
        await flush(client)
        response = await client.get("/", params={"period": "24h", "website": website})
        parser = PanelText()
        parser.feed(response.text)
        shown = [tuple(row) for row in parser.panels["page"] if row[1][:1].isdigit()]
        total = sum(range(1, 13))
        assert shown == [(f"/page-{i:02d}", str(12 - i), f"{(12 - i) / total * 100:.0f}%") for i in range(10)]
        more = re.search(r'<a href="([^"]+)">Show all pages</a>', response.text)
        assert more and "show=page" in more.group(1)
        full = await client.get(more.group(1).replace("&amp;", "&"))
        parser = PanelText()
        parser.feed(full.text)
        assert [row[0] for row in parser.panels["page"] if row[1][:1].isdigit()] == [f"/page-{i:02d}" for i in range(12)]
        assert "panel-country" not in full.text and "Back to the whole summary" in full.text

        csv_link = re.search(r'<a class="csv" href="([^"]+)" aria-label="Pages as CSV">', response.text)
        assert csv_link
        exported = await client.get(csv_link.group(1).replace("&amp;", "&"))
        assert exported.headers["content-type"] == "text/csv; charset=utf-8"
        assert exported.headers["content-disposition"].startswith('attachment; filename="footfall-test-page-')
        lines = list(csv.reader(io.StringIO(exported.text)))
        assert lines[0] == ["page", "pageviews", "share"]
        assert [(v, c, f"{float(s) * 100:.0f}%") for v, c, s in lines[1:11]] == shown and len(lines) == 13
        whole = list(
            csv.reader(
                io.StringIO((await client.get("/", params={"period": "24h", "website": website, "export": "all"})).text)
            )
        )
        assert ["totals", "pageviews", "", str(total), "", "", ""] in whole
        assert ["page", "/page-00", "", "12", str(round(12 / total, 4)), "", ""] in whole
        assert (await client.get("/", params={"period": "24h", "website": website, "export": "nope"})).status_code == 400
        await send(client, website, "/x", FIREFOX, "203.0.113.99", "DE", timestamp=at + 5, name="=HYPERLINK(1)")
        await flush(client)
        events = await client.get("/", params={"period": "24h", "website": website, "export": "event"})
        assert list(csv.reader(io.StringIO(events.text)))[1][0] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
        filtered = await client.get("/", params={"period": "24h", "website": website, "page": "/page-03"})
        link = re.search(r'<a class="csv" href="([^"]+)" aria-label="Pages as CSV">', filtered.text)
        assert link and "page=%2Fpage-03" in link.group(1) and "period=24h" in link.group(1)
        lines = list(csv.reader(io.StringIO((await client.get(link.group(1).replace("&amp;", "&"))).text)))
        assert lines == [["page", "pageviews", "share"], ["/page-03", "9", "1.0"]]  # the filter's one visit, as on the page

        for path, params in (
            ("/", {"period": "24h", "website": website}),
            ("/api/summary", {"period": "24h", "website": website}),
            ("/", {"website": website, "export": "all"}),
        ):
            plain = await client.get(path, params=params, headers={"accept-encoding": "identity"})
            packed = await client.get(path, params=params, headers={"accept-encoding": "gzip"})
            assert "content-encoding" not in plain.headers
            assert packed.headers["content-encoding"] == "gzip" and "Accept-Encoding" in packed.headers["vary"]
            assert int(packed.headers["content-length"]) < len(plain.content) / 3  # httpx has decoded it: the same body
            assert packed.content == plain.content or path == "/"  # the page shows the time of day; the rest is equal
        css = await client.get("/static/footfall.css", headers={"accept-encoding": "gzip"})
        assert css.headers["content-encoding"] == "gzip" and css.headers["etag"]
        again = await client.get(
            "/static/footfall.css", headers={"accept-encoding": "gzip", "if-none-match": css.headers["etag"]}
        )
        assert again.status_code == 304
        tracker = await client.get("/script.js", headers={"accept-encoding": "gzip"})
        assert tracker.headers["content-encoding"] == "gzip" and tracker.text.startswith(("(", "/", "!", '"'))  # decoded once
        sent = await client.post("/api/send", json={"type": "event", "payload": {"website": website, "url": "/x"}},
                                 headers={"user-agent": FIREFOX, "accept-encoding": "gzip"})  # fmt: skip
        assert sent.status_code == 200 and "content-encoding" not in sent.headers


def test_chart_ticks_and_bins() -> None:
    """Ticks are round and end just above the tallest bar; intervals follow the range so a bar is never a hairline."""
    from footfall.summary import resolve_range
    from footfall.web import chart_geometry, nice_ticks

    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(3) == [0, 1, 2, 3, 4]
    assert nice_ticks(20) == [0, 5, 10, 15, 20, 25]
    assert nice_ticks(58) == [0, 20, 40, 60]
    assert nice_ticks(12_345) == [0, 5000, 10000, 15000]
    zone, now = dt.timezone.utc, NOW
    expected = {"today": ("hour", 24), "24h": ("hour", 24), "7d": ("day", 7), "90d": ("day", 90), "12m": ("week", 51)}
    for name, (step, bars) in expected.items():
        period = resolve_range(name, None, None, zone, now, 0)
        assert (period.step, len(period.bounds) - 1) == (step, bars), name
        points = [{"start": a, "end": b, "pageviews": 1, "visitors": 1} for a, b in zip(period.bounds, period.bounds[1:])]
        bar = chart_geometry(points, points, period)["bars"][0]
        assert bar["slot_w"] >= 9.5, (name, bar)  # at least ~10 px at 1280 px, ~4 px on a 390 px phone's narrow chart
    two_years = resolve_range(None, "2024-05-01", "2026-04-30", zone, now, 0)
    assert two_years.step == "month" and len(two_years.bounds) - 1 == 24
    weeks = resolve_range("12m", None, None, zone, now, 0)
    mondays = {dt.datetime.fromtimestamp(t, zone).weekday() for t in weeks.bounds[1:-1]}
    assert mondays == {0}  # weeks start on Monday (the first one starts with the range)
