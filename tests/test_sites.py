"""Which sites exist and which one the summary opens on: 'default' only in an empty database, `/` on the busiest site."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import collector
import footfall.app
import footfall.cli
from conftest import CHROME, FIREFOX, T0, Clock, add_website, flush, hit, open_client, rows

pytestmark = pytest.mark.anyio

SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"


def test_serve_adds_default_only_to_an_empty_database(tmp_path: Path) -> None:
    """serve's start makes 'default' in a database with no website at all, not beside sites added or removed before."""
    fresh = tmp_path / "fresh.db"
    assert collector.prepare_database(str(fresh)).default_website_id is not None
    assert rows(fresh, "SELECT name FROM website") == [("default",)]
    added = tmp_path / "added.db"
    assert CliRunner().invoke(footfall.cli.cli, ["site", "add", "blog", "--db", str(added)]).exit_code == 0
    assert collector.prepare_database(str(added)).default_website_id is None
    assert rows(added, "SELECT name FROM website") == [("blog",)]
    removed = tmp_path / "removed.db"
    blog = CliRunner().invoke(footfall.cli.cli, ["site", "add", "blog", "--db", str(removed)]).stdout.strip()
    assert CliRunner().invoke(footfall.cli.cli, ["site", "remove", blog, "--db", str(removed)]).exit_code == 0
    assert collector.prepare_database(str(removed)).default_website_id is None
    assert rows(removed, "SELECT name, deleted_at IS NOT NULL FROM website") == [("blog", 1)]


async def page_of(db_path: Path, visits: dict[str, list[str]], names: list[str], query: str) -> tuple[dict[str, str], str]:
    """Sites called ``names`` in a fresh database, ``visits`` (site → user agents, one visitor each) sent; GET ``query``."""
    collector.prepare_database(str(db_path), now=T0, default_site=False)
    sites = {name: add_website(db_path, name) for name in names}
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock())) as client:
        for name, agents in visits.items():
            for agent in agents:
                body = hit(sites[name], url="/", timestamp=int(T0) - 60)
                assert (await client.post("/api/send", json=body, headers={"User-Agent": agent})).status_code == 200
        await flush(client)
        response = await client.get(query)
    assert response.status_code == 200, response.text
    return sites, response.text


def shown(page: str) -> str:
    return re.search(r"<title>(.*?) · ", page).group(1)  # type: ignore[union-attr]


async def test_summary_opens_on_the_site_with_most_visitors(db_path: Path) -> None:
    """`/` shows the site with the most visitors in the range, not the first by name; its links keep that site."""
    sites, page = await page_of(
        db_path, {"alpha": [FIREFOX], "blog": [FIREFOX, CHROME, SAFARI]}, ["alpha", "blog", "default"], "/?period=24h"
    )
    assert shown(page) == "blog"
    links = re.findall(r'href="(/\?[^"]*)"', page)
    assert links and all(f"website={sites['blog']}" in link for link in links), links


async def test_ties_go_to_default_then_to_the_first_by_name(db_path: Path, tmp_path: Path) -> None:
    """With as many visitors everywhere, `/` opens on 'default', and without one on the first site by name."""
    _, page = await page_of(
        db_path, {"alpha": [FIREFOX], "default": [CHROME], "zulu": [SAFARI]}, ["alpha", "default", "zulu"], "/?period=24h"
    )
    assert shown(page) == "default"
    _, page = await page_of(tmp_path / "other.db", {}, ["zulu", "alpha"], "/?period=24h")
    assert shown(page) == "alpha"


async def test_a_chosen_site_stays_chosen(db_path: Path) -> None:
    """A website in the URL is shown whatever the traffic elsewhere."""
    sites, _ = await page_of(db_path, {"blog": [FIREFOX, CHROME]}, ["alpha", "blog"], "/?period=24h")
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock())) as client:
        page = (await client.get("/", params={"period": "24h", "website": sites["alpha"]})).text
    assert shown(page) == "alpha"
