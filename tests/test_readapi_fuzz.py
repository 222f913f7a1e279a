"""Hypothesis over every read endpoint's query parameters, on a live server with traffic: never a 5xx.

Each endpoint gets generated query strings: its own parameters and every filter, with values that are sometimes right
(times around now, known units, zones and types, filter values with Umami's operators) and sometimes anything at all.
Every answer must be 200 or a 400 in Umami's error shape, and the server must log no traceback.
"""

from __future__ import annotations

import collections
import time
from urllib.parse import quote
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import footfall.cli
from conftest import FIREFOX, LiveServer, rows
from footfall.readapi import COMPARES, FILTER_PARAMS, OPERATORS, UNANSWERED_PARAMS, UNITS
from footfall.readnumbers import METRIC_TYPES

#: Generated requests per endpoint.
EXAMPLES = 25
SENT: collections.Counter[str] = collections.Counter()
#: Requests per endpoint that got 200 (so the numbers themselves were computed, not only the parameters checked).
ANSWERED: collections.Counter[str] = collections.Counter()
NOW_MS = int(time.time() * 1000)

#: Endpoint → its own parameters (filters come on top for every one but the website routes).
ENDPOINTS = {
    "/stats": ("startAt", "endAt", "startDate", "endDate", "compare", "unit", "timezone"),
    "/pageviews": ("startAt", "endAt", "startDate", "endDate", "compare", "unit", "timezone"),
    "/metrics": ("startAt", "endAt", "startDate", "endDate", "type", "limit", "offset", "search", "unit", "timezone"),
    "/events/series": ("startAt", "endAt", "timezone", "unit", "limit"),
    "/active": (),
    "/daterange": (),
    "": (),
    "/api/websites": ("page", "pageSize", "search"),
}

anything = st.text(max_size=30)
millis = st.one_of(
    st.integers(NOW_MS - 400 * 86_400_000, NOW_MS + 86_400_000).map(str),
    st.integers(-(10**18), 10**18).map(str),
    st.sampled_from(["0", "253402300799999", "1e12", "NaN", "", " 5", "³"]),
)
dates = st.one_of(
    st.dates().map(str),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(["9999-12-31", "0001-01-01", "2026-02-30", "2026-05-13T25:00:00", "253402300799"]),
)
VALUES = {
    "startAt": millis,
    "endAt": millis,
    "startDate": st.one_of(dates, anything),
    "endDate": st.one_of(dates, anything),
    "compare": st.sampled_from(["prev", "yoy", "", "week"]),
    "unit": st.one_of(st.sampled_from(UNITS), anything),
    "timezone": st.sampled_from(
        ["UTC", "utc", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham", "", "Mars/Base", "../../etc"]
    ),
    "type": st.one_of(st.sampled_from(METRIC_TYPES), anything),
    "limit": st.one_of(st.integers(-5, 20_000).map(str), anything),
    "offset": st.one_of(st.integers(-5, 1000).map(str), anything),
    "page": st.one_of(st.integers(-2, 5).map(str), anything),
    "pageSize": st.one_of(st.integers(-2, 50).map(str), anything),
    "search": anything,
}
filter_value = st.one_of(
    st.sampled_from(["/", "/a", "DE", "Chrome", "signup", "mobile", "en-US", "example.com", "x,y"]),
    st.tuples(st.sampled_from(OPERATORS), anything).map(lambda t: f"{t[0]}.{t[1]}"),
    st.text(max_size=600),
)
filter_names = st.sampled_from([*FILTER_PARAMS, *UNANSWERED_PARAMS, "browser1", "pf_plan", "epf0", "junk"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str, str]]:
    import conftest

    db = tmp_path_factory.mktemp("readapi-fuzz") / "footfall.db"
    live = LiveServer(db, "--no-embedded-geo")
    conftest._LIVE_SERVERS.remove(live)  # it outlives single tests; stopped here
    website = rows(db, "SELECT website_id FROM website")[0][0]
    key = CliRunner().invoke(footfall.cli.cli, ["api-key", "create", "fuzz", "--db", str(db)]).output.strip()
    now = int(time.time())
    for n, path in enumerate(["/", "/a", "/", "/b?x=1"]):
        payload = {
            "website": website,
            "url": path,
            "timestamp": now - 3000 + n * 60,
            "title": path,
            "tag": "t",
            "id": f"u{n % 2}",
        }
        if n == 2:
            payload["name"] = "signup"
        httpx.post(live.url + "/api/send", json={"type": "event", "payload": payload}, headers={"user-agent": FIREFOX})
    try:
        yield live, website, key
    finally:
        code = live.stop()
        output = live.log.read_text(errors="replace")
    assert code == 0 and "Traceback" not in output and "server-error" not in output, output
    assert sum(SENT.values()) >= EXAMPLES * len(ENDPOINTS), SENT


@st.composite
def good_range(draw: st.DrawFn) -> dict[str, str]:
    """A range footfall answers: startAt ≤ endAt around now (minutes to a year long)."""
    start = draw(st.integers(NOW_MS - 400 * 86_400_000, NOW_MS))
    return {"startAt": str(start), "endAt": str(start + draw(st.integers(0, 400 * 86_400_000)))}


GOOD = {
    "compare": st.sampled_from(COMPARES),
    "unit": st.sampled_from(UNITS),
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham"]),
    "type": st.sampled_from(METRIC_TYPES),
    "limit": st.integers(0, 50).map(str),
    "offset": st.integers(0, 5).map(str),
    "page": st.integers(1, 3).map(str),
    "pageSize": st.integers(1, 5).map(str),
    "search": st.sampled_from(["", "a", "/", "é", "%"]),
}
good_filters = st.dictionaries(
    st.sampled_from(list(FILTER_PARAMS)),
    st.sampled_from(["/", "/a", "/b", "t", "signup", "Firefox", "Linux", "laptop", "u0", "eq./", "x=1"]),
    max_size=2,
)


def query(own: tuple[str, ...], filters: bool) -> st.SearchStrategy[dict[str, str]]:
    """Half the time a request footfall should answer (so the numbers are computed), half the time anything."""
    wild = st.fixed_dictionaries({}, optional={name: VALUES[name] for name in own})
    if filters:
        wild = st.tuples(wild, st.dictionaries(filter_names, filter_value, max_size=3)).map(lambda t: {**t[1], **t[0]})
    required = {"timezone": GOOD["timezone"]} if "endAt" in own and "startDate" not in own else {}
    good = st.fixed_dictionaries(
        required, optional={name: GOOD[name] for name in own if name in GOOD and name not in required}
    )
    if "endAt" in own:
        good = st.tuples(good, good_range()).map(lambda t: {**t[0], **t[1]})
    if "type" in own:
        good = st.tuples(good, GOOD["type"]).map(lambda t: {**t[0], "type": t[1]})
    if filters:
        good = st.tuples(good, good_filters).map(lambda t: {**t[1], **t[0]})
    return st.one_of(good, wild)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_no_query_string_makes_a_server_error(server: tuple[LiveServer, str, str], endpoint: str) -> None:
    """Generated query strings for one endpoint: 200, or a 400 in Umami's shape naming the problem; never a 5xx."""
    live, website, key = server
    url = endpoint if endpoint.startswith("/api/") else f"{live.url}/api/websites/{website}{endpoint}"
    url = live.url + url if url.startswith("/") else url

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(query(ENDPOINTS[endpoint], endpoint not in ("", "/api/websites")))
    def run(params: dict[str, str]) -> None:
        response = httpx.get(url, params=params, headers={"x-umami-api-key": key}, timeout=60)
        SENT[endpoint] += 1
        ANSWERED[endpoint] += response.status_code == 200
        assert response.status_code in (200, 400), (params, response.status_code, response.text)
        if response.status_code == 400:
            error = response.json()["error"]
            assert error["code"] == "bad-request" and error["status"] == 400 and error["message"], error

    run()
    assert ANSWERED[endpoint] >= SENT[endpoint] // 4, (SENT, ANSWERED)  # the numbers were computed, not only checked


@given(st.text(min_size=1, max_size=60))
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_website_id_makes_a_server_error(server: tuple[LiveServer, str, str], website_id: str) -> None:
    """Any text where the website id goes: 404 (or Litestar's 404 for a path that is no route), never a 5xx."""
    live, _, key = server
    path = f"/api/websites/{quote(website_id, safe='')}/active"
    response = httpx.get(live.url + path, headers={"x-umami-api-key": key}, timeout=60)
    SENT["website id"] += 1
    assert response.status_code in (404, 400, 405), (website_id, response.text)
