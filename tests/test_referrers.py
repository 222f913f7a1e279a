"""URLs, referrers and campaigns: how each request's URL parts are derived and stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import collector
import footfall.app
from conftest import FIREFOX, AppClient, Clock, flush, hit, open_client, rows

pytestmark = pytest.mark.anyio


async def stored(client: AppClient, db_path: Path, website: str, columns: str, **payload: Any) -> tuple[Any, ...]:
    response = await client.post("/api/send", json=hit(website, **payload), headers={"User-Agent": FIREFOX})
    assert response.status_code == 200, response.text
    await flush(client)
    return rows(db_path, f"SELECT {columns} FROM events ORDER BY event_key DESC LIMIT 1")[0]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"hostname": "example.com", "url": "/a", "referrer": "https://www.example.com/b"}, ("example.com", "/b", 1)),
        ({"url": "https://www.example.com/a", "referrer": "https://example.com/"}, ("example.com", "/", 1)),
        ({"hostname": "example.com", "url": "/a", "referrer": "/from-here"}, ("example.com", "/from-here", 1)),
        (
            {"hostname": "example.com", "url": "/a", "referrer": "https://www.google.com/search?q=x"},
            ("google.com", "/search", 0),
        ),
        ({"hostname": "example.com", "url": "/a", "referrer": "https://blog.example.com/"}, ("blog.example.com", "/", 0)),
        ({"hostname": "example.com", "url": "/a", "referrer": ""}, (None, None, 0)),
    ],
)
async def test_self_referrals_are_stored_and_marked(
    client: AppClient, db_path: Path, website: str, payload: dict[str, str], expected: tuple[Any, ...]
) -> None:
    """A referrer on the event's own host (with or without www.) is kept with self_referral = 1; others get 0."""
    assert await stored(client, db_path, website, "referrer_domain, referrer_path, self_referral", **payload) == expected


@pytest.mark.parametrize(
    ("url", "hostname", "expected"),
    [
        ("https://www.shop.example/x", None, ("shop.example", "/x")),
        ("/relative/path", None, ("localhost", "/relative/path")),  # as Umami: new URL(url, "https://localhost")
        ("/relative/path", "given.example", ("given.example", "/relative/path")),
        ("page.html?x=1", "given.example", ("given.example", "/page.html")),
        ("https://example.com/caf%C3%A9/%E2%9C%93", None, ("example.com", "/café/✓")),
        ("https://example.com/a%2Fb%3Fc", None, ("example.com", "/a%2Fb%3Fc")),  # reserved characters stay escaped
        ("https://example.com/bad%FF%FE", None, ("example.com", "/bad%FF%FE")),  # not UTF-8: kept as sent
        ("https://example.com/#/spa/route", None, ("example.com", "/#/spa/route")),
    ],
)
async def test_url_path_and_hostname(
    client: AppClient, db_path: Path, website: str, url: str, hostname: str | None, expected: tuple[Any, ...]
) -> None:
    """url_path is path + #hash, percent-decoded safely; hostname is payload.hostname or the URL's host without www."""
    payload = {"url": url} if hostname is None else {"url": url, "hostname": hostname}
    assert await stored(client, db_path, website, "hostname, url_path", **payload) == expected


@pytest.mark.parametrize(
    ("url", "expected"), [("/about/", "/about"), ("/a/#x", "/a#x"), ("/", ""), ("/keep", "/keep"), ("/a/?q=1", "/a")]
)
async def test_remove_trailing_slash(db_path: Path, clock: Clock, website: str, url: str, expected: str) -> None:
    """--remove-trailing-slash stores /about/ as /about, as Umami's REMOVE_TRAILING_SLASH."""
    config = collector.Config(db=str(db_path), remove_trailing_slash=True, embedded_geo=False)
    async with open_client(footfall.app.create_app(config, clock)) as client:
        assert await stored(client, db_path, website, "url_path", url=url) == (expected,)


async def test_trailing_slash_kept_by_default(client: AppClient, db_path: Path, website: str) -> None:
    """Without the option /about/ stays /about/."""
    assert await stored(client, db_path, website, "url_path", url="/about/") == ("/about/",)


async def test_first_campaign_value_wins_and_is_decoded(client: AppClient, db_path: Path, website: str) -> None:
    """As URLSearchParams.get(): the first utm_source counts, '+' and %XX decoded; url_query stays raw."""
    assert await stored(
        client,
        db_path,
        website,
        "utm_source, utm_campaign, url_query",
        url="/?utm_source=a+b&utm_source=second&utm_campaign=%C3%A9t%C3%A9",
    ) == ("a b", "été", "utm_source=a+b&utm_source=second&utm_campaign=%C3%A9t%C3%A9")
