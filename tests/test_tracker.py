"""footfall's tracker at /script.js, in a real headless Chromium on another origin, checked as rows in the SQLite file."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import collector
from conftest import ROOT, LiveServer, free_port, rows

pytestmark = pytest.mark.slow

CHROME_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


class Site:
    """Test pages served from http://localhost:PORT, another origin than the collector on 127.0.0.1."""

    def __init__(self, root: Path, collector_url: str, website: str) -> None:
        self.root, self.collector_url, self.website = root, collector_url, website
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
        handler.log_message = lambda *args: None  # type: ignore[assignment]
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.url = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, name: str, attrs: str = "", body: str = "", head: str = "", src: str = "/script.js") -> str:
        """Write a page that loads the tracker with extra script-tag attributes; return its URL."""
        (self.root / name).write_text(
            f"<!doctype html><html><head><title>{name} title</title>{head}"
            f'<script defer src="{self.collector_url}{src}" data-website-id="{self.website}" {attrs}></script>'
            f"</head><body><p>{name}</p>{body}</body></html>"
        )
        return f"{self.url}/{name}"


@pytest.fixture
def server(db_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(db_path)
    yield live
    live.stop()


@pytest.fixture
def site(tmp_path: Path, server: LiveServer, db_path: Path) -> Iterator[Site]:
    website = rows(db_path, "SELECT website_id FROM website WHERE name = 'default'")[0][0]
    pages = tmp_path / "pages"
    pages.mkdir()
    served = Site(pages, server.url, website)
    yield served
    served.server.shutdown()


def wait_rows(db_path: Path, sql: str, count: int = 1, timeout: float = 15) -> list[tuple[Any, ...]]:
    """Poll the database file (another process writes it) until the query returns ``count`` rows."""
    deadline = time.monotonic() + timeout
    while True:
        found = rows(db_path, sql)
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, (sql, found)
            return found
        time.sleep(0.1)


def new_page(browser: Any, user_agent: str | None = CHROME_UA, init_script: str = "") -> Any:
    context = browser.new_context(user_agent=user_agent) if user_agent else browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    if init_script:
        page.add_init_script(init_script)
    return page


def test_tracker_sends_what_umami_sends(browser: Any, site: Site, db_path: Path) -> None:
    """Pageview, custom event with data, identify, a data-umami-event link click (navigation still happens), a pushState
    pageview with the previous URL as referrer, and visible time + vitals on page hide: all land as rows."""
    page = new_page(browser)
    link = '<a id="go" href="page2.html" data-umami-event="signup-button" data-umami-event-plan="pro">go</a>'
    site.page("page2.html", 'data-tag="anchor"')
    page.goto(site.page("page1.html", 'data-tag="anchor" data-performance="true"', link))
    first = wait_rows(
        db_path, "SELECT event_type, page_title, hostname, tag, referrer_domain FROM events WHERE url_path = '/page1.html'"
    )
    assert first == [(1, "page1.html title", "localhost", "anchor", None)]
    session = page.evaluate("umami.getSession()")
    assert session["website"] == site.website and session["cache"]

    page.evaluate("umami.track('custom-evt', {a: 1, nested: {b: 'two'}})")
    assert wait_rows(
        db_path, "SELECT data_key, string_value FROM custom_events WHERE event_name = 'custom-evt' ORDER BY 1", 2
    ) == [("a", "1.0000"), ("nested.b", "two")]

    page.evaluate("umami.identify('user-9', {plan: 'pro'})")
    assert wait_rows(db_path, "SELECT data_key, string_value, distinct_id FROM session_data") == [("plan", "pro", "user-9")]

    page.evaluate("history.pushState({}, '', '/spa?utm_source=test&x=1')")
    spa = wait_rows(
        db_path,
        "SELECT url_query, utm_source, referrer_path, self_referral, distinct_id FROM events "
        "WHERE url_path = '/spa' AND event_type = 1",
    )
    assert spa == [("utm_source=test&x=1", "test", "/page1.html", 1, "user-9")]
    perf = wait_rows(
        db_path,
        "SELECT duration, fcp IS NOT NULL, ttfb IS NOT NULL FROM events WHERE event_type = 5 AND url_path = '/page1.html'",
    )
    assert perf[0][0] >= 0 and perf[0][1:] == (1, 1)

    page.click("#go")
    page.wait_for_url("**/page2.html")
    assert wait_rows(db_path, "SELECT data_key, string_value FROM custom_events WHERE event_name = 'signup-button'") == [
        ("plan", "pro")
    ]
    wait_rows(db_path, "SELECT 1 FROM events WHERE url_path = '/page2.html' AND event_type = 1")
    assert page.errors == []
    # Closing the tab hides the page: it reports how long it was visible. (This headless Chromium drops beacons sent while
    # a navigation unloads a page, so the report of /spa on the link click is not asserted; a closing tab's arrives.)
    page.wait_for_timeout(300)
    page.close(run_before_unload=True)
    assert wait_rows(
        db_path, "SELECT duration >= 300, lcp IS NULL FROM events WHERE event_type = 5 AND url_path = '/page2.html'"
    ) == [(1, 1)]
    # page1 and page2 are one visit of the anonymous session; /spa came after identify('user-9'), another session
    assert sorted(rows(db_path, "SELECT pageviews, custom_events FROM visits")) == [(1, 1), (2, 1)]


def test_headless_chrome_is_counted_as_a_bot(browser: Any, site: Site, db_path: Path) -> None:
    """Chromium's default HeadlessChrome user agent is a bot: nothing stored, the bot counter goes up."""
    page = new_page(browser, user_agent=None)
    assert "HeadlessChrome" in page.evaluate("navigator.userAgent")
    page.goto(site.page("headless.html"))
    wait_rows(db_path, "SELECT hits FROM bot_counter WHERE hits >= 1")
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(0,)]
    page.context.close()


@pytest.mark.parametrize(
    ("name", "attrs", "init_script", "head"),
    [
        ("dnt.html", 'data-do-not-track="true"', "Object.defineProperty(navigator, 'doNotTrack', {get: () => '1'})", ""),
        ("domains.html", 'data-domains="example.com, www.example.com"', "", ""),
        ("optout.html", "", "", "<script>localStorage.setItem('umami.disabled', '1')</script>"),
        ("dropped.html", 'data-before-send="beforeSend"', "", "<script>window.beforeSend = () => false</script>"),
    ],
)
def test_blocked_pages_send_nothing(
    browser: Any, site: Site, db_path: Path, name: str, attrs: str, init_script: str, head: str
) -> None:
    """Do-not-track, a data-domains mismatch, the umami.disabled opt-out and a before-send that drops: no rows, while a
    control page in a fresh browser context is stored."""
    page = new_page(browser, init_script=init_script)
    page.goto(site.page(name, attrs, head=head))
    page.wait_for_load_state("load")
    page.evaluate("umami.track('manual')")
    page.context.close()
    control = new_page(browser)
    control.goto(site.page("control.html"))
    wait_rows(db_path, "SELECT 1 FROM events WHERE url_path = '/control.html'")
    control.context.close()
    assert rows(db_path, f"SELECT count(*) FROM website_event WHERE url_path = '/{name}'") == [(0,)]


def test_exclude_search_hash_and_before_send_rewrite(browser: Any, site: Site, db_path: Path) -> None:
    """data-exclude-search/-hash strip the query and hash; a before-send hook can rewrite the payload."""
    page = new_page(browser)
    page.goto(site.page("excluded.html", 'data-exclude-search="true" data-exclude-hash="true"') + "?secret=1#frag")
    assert wait_rows(db_path, "SELECT url_path, url_query FROM events WHERE url_path LIKE '/excluded%'") == [
        ("/excluded.html", None)
    ]
    hook = "<script>window.rewrite = (type, p) => Object.assign(p, {url: '/rewritten', title: type})</script>"
    page.goto(site.page("rewrite.html", 'data-before-send="rewrite"', head=hook))
    assert wait_rows(db_path, "SELECT page_title FROM events WHERE url_path = '/rewritten'") == [("event",)]
    page.context.close()


def test_auto_track_off_sends_only_manual_events(browser: Any, site: Site, db_path: Path) -> None:
    """data-auto-track="false": no automatic pageview; umami.track() still works."""
    page = new_page(browser)
    page.goto(site.page("manual.html", 'data-auto-track="false"'))
    page.wait_for_load_state("load")
    page.evaluate("umami.track('by-hand')")
    assert wait_rows(db_path, "SELECT event_type, event_name FROM events WHERE url_path = '/manual.html'") == [(2, "by-hand")]
    page.context.close()


@pytest.fixture(scope="module")
def umami_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Umami's own tracker source from the npm registry (the `umami` package ships it unbuilt; it runs as is)."""
    folder = tmp_path_factory.mktemp("umami")
    try:
        subprocess.run(["npm", "pack", "umami@2.10.0", "--silent"], cwd=folder, check=True, timeout=120, capture_output=True)
        subprocess.run(["tar", "xzf", "umami-2.10.0.tgz"], cwd=folder, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"npm cannot fetch umami@2.10.0: {exc}")
    return folder / "package" / "src" / "tracker" / "index.js"


def test_umamis_own_script_with_host_url(browser: Any, site: Site, db_path: Path, umami_script: Path) -> None:
    """A site that keeps Umami's script and points data-host-url at footfall is recorded too."""
    (site.root / "umami.js").write_bytes(umami_script.read_bytes())
    (site.root / "legacy.html").write_text(
        f'<!doctype html><title>Legacy</title><script defer src="/umami.js" data-website-id="{site.website}" '
        f'data-host-url="{site.collector_url}"></script><p>legacy</p>'
    )
    page = new_page(browser)
    page.goto(f"{site.url}/legacy.html")
    assert wait_rows(db_path, "SELECT event_type, page_title FROM events WHERE url_path = '/legacy.html'") == [(1, "Legacy")]
    page.context.close()


def test_served_script(db_path: Path) -> None:
    """/script.js: the committed minified build of tracker.js, ≤ 1,800 bytes gzipped, cacheable, with an alias path and
    a collect-path alias that the served script posts to and that answers as /api/send."""
    source_hash = hashlib.sha256((ROOT / "assets" / "tracker.js").read_bytes()).hexdigest()
    assert (ROOT / "assets" / "script.js.source-sha256").read_text().strip() == source_hash, "run assets/build.sh"
    server = LiveServer(db_path, "--tracker-path", "/s/f.js", "--collect-path", "/s/c")
    try:
        with httpx.Client(base_url=server.url) as http:
            plain = http.get("/script.js", headers={"Accept-Encoding": "identity"})
            assert plain.status_code == 200
            assert plain.headers["content-type"].startswith("text/javascript")
            assert plain.headers["access-control-allow-origin"] == "*"
            assert plain.headers["cache-control"] == "public, max-age=86400"
            etag = plain.headers["etag"]
            assert etag.startswith('"') and not etag.startswith("W/")
            assert b'"/s/c"' in plain.content and b"/api/send" not in plain.content
            zipped = http.get("/script.js", headers={"Accept-Encoding": "gzip"})
            assert zipped.headers["content-encoding"] == "gzip" and zipped.content == plain.content
            assert len(gzip.compress((ROOT / "assets" / "script.js").read_bytes(), 9)) <= 1800
            assert int(zipped.headers["content-length"]) <= 1800
            assert http.get("/script.js", headers={"If-None-Match": etag}).status_code == 304
            assert http.get("/s/f.js").content == plain.content
            website = rows(db_path, "SELECT website_id FROM website")[0][0]
            answer = http.post(
                "/s/c",
                json={"type": "event", "payload": {"website": website, "url": "/via-alias"}},
                headers={"User-Agent": CHROME_UA},
            )
            assert set(answer.json()) == {"cache", "sessionId", "visitId"}
    finally:
        server.stop()
    assert rows(db_path, "SELECT url_path FROM events") == [("/via-alias",)]


def test_alias_paths_are_checked() -> None:
    """Alias paths must be plain paths and may not shadow footfall's own routes."""
    with pytest.raises(collector.ConfigError, match="tracker_path must be a path"):
        collector.load_config({"tracker_path": "stats.js"}, {})
    with pytest.raises(collector.ConfigError, match="must differ"):
        collector.load_config({"collect_path": "/api/batch"}, {})


def test_tracked_visit_appears_on_the_summary_page(browser: Any, site: Site, server: LiveServer, db_path: Path) -> None:
    """A visit the tracker reports shows on the summary page: in Pages, in the chart, and as a visitor right now."""
    page = new_page(browser)
    page.goto(site.page("landing.html"))
    wait_rows(db_path, "SELECT 1 FROM pageviews WHERE url_path = '/landing.html'")
    summary = page.context.new_page()
    summary.goto(server.url + "/?period=24h")  # loopback and no password yet: this machine may look
    assert summary.locator("#panel-page a", has_text="/landing.html").count() == 1
    assert summary.locator("#realtime-visitors").inner_text() == "1"
    assert summary.locator(".card[data-metric=Pageviews] .value").inner_text() == "1"
    assert "1 pageview, 1 visitor" in summary.locator(".chart svg.plot-wide").inner_html()
    assert page.errors == []
    page.context.close()
