"""POST /api/send: what is stored, what is answered, and every way a request can be refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

import collector
import footfall.app
from conftest import AppClient, open_client, CHROME, FIREFOX, T0, Clock, assert_api_error, flush, hit, rows

pytestmark = pytest.mark.anyio

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UA = {"User-Agent": FIREFOX}


async def send(client: AppClient, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    content = body if isinstance(body, (bytes, str)) else msgspec.json.encode(body)
    return await client.post("/api/send", content=content, headers={**UA, **(headers or {})}, **kw)


async def test_send_pageview_is_stored_once(client: AppClient, db_path: Path, website: str) -> None:
    """The seed's sample payload (without a name) is one pageview row, with the ids the response gave."""
    response = await send(
        client,
        hit(website, hostname="example.com", language="en-US", referrer="", screen="1920x1080", title="dashboard", url="/"),
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"cache", "sessionId", "visitId"}
    assert UUID_RE.match(body["sessionId"]) and UUID_RE.match(body["visitId"])
    assert body["cache"]
    await flush(client)
    assert rows(
        db_path, "SELECT session_id, visit_id, event_type, url_path, page_title, hostname, referrer_domain FROM events"
    ) == [(body["sessionId"], body["visitId"], 1, "/", "dashboard", "example.com", None)]


async def test_seed_sample_custom_event_with_data(client: AppClient, db_path: Path, website: str) -> None:
    """The seed's sample payload with name and data is a custom event with its data rows."""
    response = await send(
        client,
        hit(
            website,
            hostname="your-hostname",
            language="en-US",
            referrer="",
            screen="1920x1080",
            title="dashboard",
            url="/",
            name="event-name",
            data={"foo": "bar"},
        ),
    )
    assert response.status_code == 200
    await flush(client)
    assert rows(db_path, "SELECT event_type, event_name, data_key, data_type, string_value FROM custom_events") == [
        (2, "event-name", "foo", 1, "bar")
    ]


async def test_every_payload_field_is_stored(client: AppClient, db_path: Path, website: str) -> None:
    """URL parts, referrer parts, campaign parameters, tag, language, screen and overrides all land in their columns."""
    url = (
        "https://www.shop.example/a%20b/c?utm_source=news+letter&utm_medium=email&utm_campaign=spring&utm_content=top"
        "&utm_term=shoes&gclid=g1&fbclid=f1&msclkid=m1&ttclid=t1&li_fat_id=l1&twclid=w1#frag"
    )
    response = await send(
        client,
        hit(
            website,
            url=url,
            referrer="https://www.news.example/post?id=7",
            title="Spring%20sale",
            tag="campaign-a",
            language="de-DE",
            screen="390x844",
            browser="Lynx",
            os="Plan9",
            device="fridge",
            id="user-1",
            unknownField=1,
        ),
        headers={"User-Agent": CHROME},
    )
    assert response.status_code == 200, response.text
    await flush(client)
    (row,) = rows(
        db_path,
        """SELECT url_path, url_query, hostname, referrer_domain, referrer_path, referrer_query, page_title,
                                     tag, utm_source, utm_medium, utm_campaign, utm_content, utm_term, gclid, fbclid, msclkid,
                                     ttclid, li_fat_id, twclid, browser, os, device, screen, language, distinct_id FROM events""",
    )
    assert row == (
        "/a b/c#frag",
        url.split("?")[1].split("#")[0],
        "shop.example",
        "news.example",
        "/post",
        "id=7",
        "Spring sale",
        "campaign-a",
        "news letter",
        "email",
        "spring",
        "top",
        "shoes",
        "g1",
        "f1",
        "m1",
        "t1",
        "l1",
        "w1",
        "Lynx",
        "Plan9",
        "fridge",
        "390x844",
        "de-DE",
        "user-1",
    )


async def test_browser_os_device_are_detected(client: AppClient, db_path: Path, website: str) -> None:
    """Without overrides the user agent gives display names; a desktop with a ≤1920 px screen is a laptop."""
    await send(client, hit(website, url="/", screen="1920x1080"), headers={"User-Agent": CHROME})
    await send(client, hit(website, url="/", screen="2560x1440"))
    await flush(client)
    assert sorted(rows(db_path, "SELECT browser, os, device FROM sessions WHERE browser IS NOT NULL")) == [
        ("Chrome", "macOS", "laptop"),
        ("Firefox", "Linux", "desktop"),
    ]


async def test_text_plain_body_is_accepted(client: AppClient, db_path: Path, website: str) -> None:
    """sendBeacon posts text/plain: the body is JSON whatever the Content-Type."""
    response = await send(client, hit(website, url="/beacon"), headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert response.status_code == 200
    await flush(client)
    assert rows(db_path, "SELECT url_path FROM events") == [("/beacon",)]


async def test_identify_upserts_session_data(client: AppClient, db_path: Path, website: str) -> None:
    """identify writes no event; its data lands in session_data, a repeated key is replaced, and the session has the id."""
    first = await send(client, hit(website, type_="identify", id="user-9", data={"plan": "pro", "seats": 3}))
    second = await send(client, hit(website, type_="identify", id="user-9", data={"plan": "team"}))
    assert first.status_code == second.status_code == 200
    assert first.json()["sessionId"] == second.json()["sessionId"]
    empty = await send(client, hit(website, type_="identify"))
    assert empty.status_code == 200
    await flush(client)
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(0,)]
    assert rows(
        db_path, "SELECT data_key, data_type, string_value, number_value, distinct_id FROM session_data ORDER BY 1"
    ) == [("plan", 1, "team", None, "user-9"), ("seats", 2, "3.0000", 3.0, "user-9")]
    assert rows(db_path, "SELECT distinct_id FROM sessions WHERE session_id = ?", (first.json()["sessionId"],)) == [
        ("user-9",)
    ]


async def test_performance_stores_vitals_and_path_only(client: AppClient, db_path: Path, website: str) -> None:
    """A performance event keeps path (no query or hash), title and the five vitals, as Umami does."""
    response = await send(
        client,
        hit(
            website,
            type_="performance",
            url="http://localhost:8765/page.html?x=1#h",
            title="T",
            referrer="https://ref.example/",
            lcp=88,
            inp=40,
            cls=0.01,
            fcp=88,
            ttfb=5.900000000023283,
            duration=1056,
        ),
    )
    assert response.status_code == 200
    await flush(client)
    assert rows(
        db_path, "SELECT event_type, url_path, url_query, referrer_domain, page_title, lcp, inp, cls, fcp, ttfb FROM events"
    ) == [(5, "/page.html", None, None, "T", 88.0, 40.0, 0.01, 88.0, 5.900000000023283)]


async def test_data_is_flattened_and_typed(client: AppClient, db_path: Path, website: str) -> None:
    """Nested keys are dotted; numbers, booleans, dates, arrays and null get Umami's data types."""
    data = {
        "a": 1,
        "nested": {"b": "two", "deep": {"c": True}},
        "when": "2026-05-14T10:00:00.000Z",
        "list": [1, "x"],
        "none": None,
        "bad_date": "2026-13-40T99:00:00",
    }
    await send(client, hit(website, url="/", name="typed", data=data))
    await flush(client)
    assert rows(db_path, "SELECT data_key, data_type, string_value, number_value, date_value FROM event_data ORDER BY 1") == [
        ("a", 2, "1.0000", 1.0, None),
        ("bad_date", 1, "2026-13-40T99:00:00", None, None),
        ("list", 5, '[1,"x"]', None, None),
        ("nested.b", 1, "two", None, None),
        ("nested.deep.c", 3, "true", None, None),
        ("none", 5, "null", None, None),
        ("when", 4, "2026-05-14T10:00:00.000Z", None, int(T0)),
    ]


LONG = "x" * 2000


@pytest.mark.parametrize(
    ("field", "column", "limit"),
    [
        ("title", "page_title", 500),
        ("name", "event_name", 50),
        ("tag", "tag", 50),
        ("hostname", "hostname", 100),
        ("language", "language", 35),
        ("screen", "screen", 11),
        ("id", "distinct_id", 50),
        ("browser", "browser", 20),
        ("os", "os", 20),
        ("device", "device", 20),
    ],
)
@pytest.mark.parametrize("extra", [0, 1])
async def test_long_strings_are_truncated_at_their_limit(
    client: AppClient, db_path: Path, website: str, field: str, column: str, limit: int, extra: int
) -> None:
    """A value at the limit is kept whole; one character more is truncated to the limit (Umami answers 500)."""
    response = await send(client, hit(website, url="/", **{field: "y" * (limit + extra)}))
    assert response.status_code == 200, response.text
    await flush(client)
    assert rows(db_path, f"SELECT {column} FROM events") == [("y" * limit,)]


async def test_long_url_parts_and_campaign_ids_are_truncated(client: AppClient, db_path: Path, website: str) -> None:
    """url_path, url_query and referrer parts stop at 500 characters, UTM and click ids at 255."""
    url = f"/{'p' * 600}?utm_source={'s' * 300}&gclid={'g' * 300}&q={'q' * 600}"
    response = await send(client, hit(website, url=url, referrer=f"https://r.example/{'r' * 600}?{'z' * 600}"))
    assert response.status_code == 200
    await flush(client)
    (row,) = rows(
        db_path,
        """SELECT length(url_path), length(url_query), length(utm_source), length(gclid),
                                     length(referrer_path), length(referrer_query) FROM events""",
    )
    assert row == (500, 500, 255, 255, 500, 500)


def _nested(depth: int) -> dict[str, Any]:
    data: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        data = {"n": data}
    return data


@pytest.mark.parametrize(
    ("data", "ok", "message"),
    [
        ({f"k{i}": i for i in range(collector.MAX_DATA_KEYS)}, True, ""),
        ({f"k{i}": i for i in range(collector.MAX_DATA_KEYS + 1)}, False, "more than 50 keys"),
        (_nested(collector.MAX_DATA_DEPTH), True, ""),
        (_nested(collector.MAX_DATA_DEPTH + 1), False, "deeper than 5 levels"),
        ({"k" * 500: 1}, True, ""),
        ({"k" * 501: 1}, False, "key longer than 500"),
        ({"s": "v" * 501}, True, ""),
    ],
)
async def test_data_bounds(
    client: AppClient, db_path: Path, website: str, data: dict[str, Any], ok: bool, message: str
) -> None:
    """Both sides of each data bound: 50 keys, 5 levels, 500-character keys; long string values are truncated."""
    response = await send(client, hit(website, url="/", name="bounded", data=data))
    if ok:
        assert response.status_code == 200, response.text
        await flush(client)
        assert rows(db_path, "SELECT max(length(string_value)) <= 500, count(*) FROM event_data")[0][1] == len(
            collector.flatten_data(data)
        )
    else:
        assert_api_error(response, 400, "bad-request", message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "Invalid request body"),
        (b"", "Invalid request body"),
        (b"[]", "Expected object"),
        (b'{"type":"event"}', "payload"),
        (b'{"type":"record","payload":{}}', "$.type"),
        (b'{"type":"event","payload":{"website":123}}', "$.payload.website"),
        (b'{"type":"event","payload":{"website":"not-a-uuid"}}', "payload.website must be a UUID"),
        (b'{"type":"event","payload":{"website":"{b59e9c65-ae32-47f1-8400-119fcf4861c4}"}}', "must be a UUID"),
        (b'{"type":"event","payload":{"website":"b59e9c65-ae32-07f1-8400-119fcf4861c4"}}', "must be a UUID"),
        (b'{"type":"event","payload":{}}', "payload.website is required"),
        (b'{"type":"event","payload":{"data":[1,2]}}', "$.payload.data"),
        (b'{"type":"event","payload":{"url":5}}', "$.payload.url"),
        (b'{"type":"event","payload":{"link":"b59e9c65-ae32-47f1-8400-119fcf4861c4"}}', "Only payload.website is supported"),
        (b'{"type":"event","payload":{"pixel":"b59e9c65-ae32-47f1-8400-119fcf4861c4"}}', "Only payload.website is supported"),
        (b'{"type":"event","payload":{"lcp":"fast"}}', "$.payload.lcp"),
        (b"\xff\xfe", "Invalid request body"),
        (b"[" * 5000 + b"]" * 5000, "Invalid request body"),
        (b'{"type":"event","payload":{"data":{"n":1e999}}}', "Invalid request body"),
        (b'{"type":"event","payload":{"data":{"n":NaN}}}', "Invalid request body"),
    ],
)
async def test_malformed_bodies_get_400(client: AppClient, body: bytes, message: str) -> None:
    """Invalid JSON, wrong types and bad ids are a 400 in Umami's shape whose message names the field."""
    assert_api_error(await send(client, body), 400, "bad-request", message)


@pytest.mark.parametrize("field", ["url", "referrer"])
@pytest.mark.parametrize("value", ["http://", "https://exa mple.com/", "http://[::1", "http://host:99999/", "https://a<b/"])
async def test_bad_urls_get_400_naming_the_field(client: AppClient, website: str, field: str, value: str) -> None:
    """What `new URL()` refuses is a 400 naming payload.url or payload.referrer, never a 500."""
    assert_api_error(await send(client, hit(website, **{field: value})), 400, "bad-request", f"payload.{field}")


@pytest.mark.parametrize("value", ["/relative", "page.html", "https://example.com:8443/x", "android-app://com.google/", ""])
async def test_unusual_but_valid_urls_are_accepted(client: AppClient, website: str, value: str) -> None:
    """Relative paths, ports, app referrers and empty strings are fine, as in Umami."""
    response = await send(client, hit(website, url=value or "/", referrer=value))
    assert response.status_code == 200, response.text


async def test_relative_referrer_resolves_to_own_host(client: AppClient, db_path: Path, website: str) -> None:
    """A relative referrer resolves against payload.hostname, as new URL(referrer, base) does."""
    await send(client, hit(website, hostname="site.example", url="/b", referrer="/a?x=1"))
    await flush(client)
    assert rows(db_path, "SELECT referrer_domain, referrer_path, referrer_query FROM events") == [
        ("site.example", "/a", "x=1")
    ]


async def test_unknown_and_removed_websites_are_not_found(client: AppClient, db_path: Path, website: str) -> None:
    """An unknown id and a soft-deleted site both answer 400 'Website not found.'."""
    unknown = "b59e9c65-ae32-47f1-8400-119fcf4861c4"
    assert_api_error(await send(client, hit(unknown, url="/")), 400, "bad-request", "Website not found.")
    with __import__("contextlib").closing(collector.connect(str(db_path))) as conn:
        conn.execute("UPDATE website SET deleted_at = 1 WHERE website_id = ?", (website,))
    await client.app.state.collection.load_websites()
    assert_api_error(await send(client, hit(website, url="/")), 400, "bad-request", "Website not found.")


async def test_website_id_is_case_insensitive(client: AppClient, website: str) -> None:
    """Upper-case UUIDs pass validation (as zod's) and find the site."""
    assert (await send(client, hit(website.upper(), url="/"))).status_code == 200


@pytest.mark.parametrize("headers", [{"User-Agent": ""}, {"User-Agent": "   "}])
async def test_missing_user_agent_is_refused(client: AppClient, db_path: Path, website: str, headers: dict[str, str]) -> None:
    """footfall differs from Umami: a hit without a User-Agent is a 400, not a row with no browser."""
    assert_api_error(
        await send(client, hit(website, url="/"), headers=headers), 400, "bad-request", "User-Agent header is required"
    )
    ok = await send(client, hit(website, url="/", userAgent=FIREFOX), headers=headers)
    assert ok.status_code == 200  # payload.userAgent is enough


async def test_bots_get_beep_boop_and_are_only_counted(client: AppClient, db_path: Path, website: str) -> None:
    """Bot user agents answer 200 {"beep":"boop"}, store no event or session, and are counted per site per day."""
    for agent in (
        "curl/7.88",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "python-requests/2.31",
    ):
        response = await send(client, hit(website, url="/"), headers={"User-Agent": agent})
        assert response.status_code == 200 and response.json() == {"beep": "boop"}, agent
    node = await send(client, hit(website, url="/"), headers={"User-Agent": "Mozilla/5.0 Umami/v20.20.2"})
    assert set(node.json()) == {"cache", "sessionId", "visitId"}  # @umami/node is a server-side sender, not a bot
    await flush(client)
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(1,)]
    assert rows(db_path, "SELECT count(*) FROM session") == [(1,)]
    assert rows(db_path, "SELECT day, hits FROM bot_counter") == [("2026-05-14", 4)]


async def test_bot_check_can_be_turned_off(db_path: Path, clock: Clock, website: str) -> None:
    """--no-bot-check stores bot hits like any other."""
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path), bot_check=False), clock)) as client:
        response = await send(client, hit(website, url="/"), headers={"User-Agent": "curl/8.0"})
        assert set(response.json()) == {"cache", "sessionId", "visitId"}
    assert rows(db_path, "SELECT browser FROM sessions WHERE session_id = ?", (response.json()["sessionId"],)) == [("curl",)]


@pytest.mark.parametrize(("offset", "ok"), [(3600, True), (3601, False), (-86400 * 30, True)])
async def test_timestamp_is_honoured_up_to_an_hour_ahead(
    client: AppClient, db_path: Path, website: str, offset: int, ok: bool
) -> None:
    """payload.timestamp (Unix seconds) sets created_at; more than an hour in the future is a 400."""
    response = await send(client, hit(website, url="/", timestamp=str(int(T0) + offset)))
    if not ok:
        assert_api_error(response, 400, "bad-request", "payload.timestamp")
        return
    assert response.status_code == 200
    await flush(client)
    assert rows(db_path, "SELECT created_unix FROM events") == [(int(T0) + offset,)]


@pytest.mark.parametrize("value", ["1.5", "soon", -5, 1.5])
async def test_bad_timestamps_get_400(client: AppClient, website: str, value: Any) -> None:
    """Fractions, words and negative numbers are refused."""
    assert_api_error(await send(client, hit(website, url="/", timestamp=value)), 400, "bad-request", "payload.timestamp")


@pytest.mark.parametrize("value", [0, "", None])
async def test_zero_or_empty_timestamp_means_now(client: AppClient, db_path: Path, website: str, value: Any) -> None:
    """0, '' and null mean 'now', as Umami's coerce-then-falsy check."""
    assert (await send(client, hit(website, url="/", timestamp=value))).status_code == 200
    await flush(client)
    assert rows(db_path, "SELECT created_unix FROM events") == [(int(T0),)]


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("lcp", 60000, True),
        ("lcp", 60000.1, False),
        ("ttfb", -0.1, False),
        ("cls", 100, True),
        ("cls", 100.5, False),
        ("inp", 0, True),
        ("fcp", 1e9, False),
    ],
)
async def test_vitals_bounds(client: AppClient, website: str, field: str, value: float, ok: bool) -> None:
    """Vitals in ms lie in [0, 60000] and CLS in [0, 100], both ends included."""
    response = await send(client, hit(website, type_="performance", url="/", **{field: value}))
    if ok:
        assert response.status_code == 200
    else:
        assert_api_error(response, 400, "bad-request", f"payload.{field}")


async def test_body_size_limit(client: AppClient, website: str) -> None:
    """A body at the 64 KiB limit is read; one byte more is a 413 in Umami's error shape."""
    base = msgspec.json.encode(hit(website, url="/", title=""))
    padded = base.replace(b'"title":""', b'"title":"' + b"t" * (collector.MAX_SEND_BODY_BYTES - len(base)) + b'"')
    assert len(padded) == collector.MAX_SEND_BODY_BYTES
    assert (await send(client, padded)).status_code == 200
    assert_api_error(await send(client, padded + b" "), 413, "payload-too-large")


async def test_cache_token_round_trip(client: AppClient, clock: Clock, website: str) -> None:
    """Echoing the token keeps session and visit; a forged, truncated or stale token is ignored, never an error."""
    first = (await send(client, hit(website, url="/1"))).json()
    again = await send(client, hit(website, url="/2"), headers={"x-umami-cache": first["cache"]})
    assert again.status_code == 200
    assert (again.json()["sessionId"], again.json()["visitId"]) == (first["sessionId"], first["visitId"])
    token = collector.read_cache_token(first["cache"], client.app.state.collection.token_key, clock())
    assert token == (website, first["sessionId"], first["visitId"], int(T0))
    forged = first["cache"][:-3] + ("AAA" if not first["cache"].endswith("AAA") else "BBB")
    for bad in (forged, first["cache"][:20], "garbage!!", "x" * 5000, ""):
        response = await send(client, hit(website, url="/3"), headers={"x-umami-cache": bad})
        assert response.status_code == 200
        assert collector.read_cache_token(bad, client.app.state.collection.token_key, clock()) is None
    clock.advance(collector.TOKEN_MAX_AGE_SECONDS + 1)
    assert collector.read_cache_token(first["cache"], client.app.state.collection.token_key, clock()) is None
    assert (await send(client, hit(website, url="/4"), headers={"x-umami-cache": first["cache"]})).status_code == 200


async def test_token_from_another_install_is_ignored(client: AppClient, clock: Clock, website: str) -> None:
    """A token signed with another secret does not verify."""
    other = collector.issue_cache_token(
        b"k" * 32, website, "db605238-1896-5e39-a096-f9f2d394feb6", "d018fc3f-8f6a-51fd-aa67-5499a01f0f1d", clock()
    )
    assert collector.read_cache_token(other, client.app.state.collection.token_key, clock()) is None


async def test_cors_preflight_and_headers(client: AppClient, website: str) -> None:
    """Browsers on other origins get a preflight answer and Access-Control-Allow-Origin on answers and errors."""
    preflight = await client.options(
        "/api/send",
        headers={
            "Origin": "http://localhost:8765",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-umami-cache",
        },
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == "*"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "content-type" in allowed and "x-umami-cache" in allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]
    ok = await send(client, hit(website, url="/"), headers={"Origin": "http://localhost:8765"})
    assert ok.headers["access-control-allow-origin"] == "*"
    bad = await send(client, b"{", headers={"Origin": "http://localhost:8765"})
    assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == "*"


async def test_heartbeat(client: AppClient) -> None:
    """GET /api/heartbeat answers {"ok": true} for the umami-analytics client."""
    response = await client.get("/api/heartbeat")
    assert response.status_code == 200 and response.json() == {"ok": True}


async def test_other_routes_and_methods_are_json_errors(client: AppClient) -> None:
    """GET /api/send is a 405 and an unknown path a 404, both in the error shape."""
    assert_api_error(await client.get("/api/send"), 405, "method-not-allowed")
    assert_api_error(await client.get("/nope"), 404, "not-found")


async def test_no_ip_or_user_agent_at_rest(client: AppClient, db_path: Path, website: str) -> None:
    """Neither the client IP nor the user-agent string appear anywhere in the database file or its WAL."""
    agent = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0 UniqueMarker/42"
    await send(client, hit(website, url="/private", name="e", data={"k": "v"}), headers={"User-Agent": agent})
    await send(client, hit(website, type_="identify", data={"k": "v"}), headers={"User-Agent": agent})
    await flush(client)
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob("footfall.db*"))
    assert b"/private" in raw  # the scan does see stored data
    assert b"UniqueMarker" not in raw and agent.encode() not in raw
    assert b"testclient" not in raw and b"127.0.0.1" not in raw  # the test client's peer address


async def test_garbage_never_gives_500(client: AppClient, website: str) -> None:
    """A sweep of odd but well-formed JSON values in every field answers 200 or 400, never 5xx."""
    odd: list[Any] = [None, "", " ", "\u0000", "\u202e", "🙂" * 300, 0, -1, 2**70, 1e308, True, [], {}, {"a": None}]
    fields = list(collector.Payload.__struct_fields__)
    for field in fields:
        for value in odd:
            payload = {"website": website, "url": "/", field: value}
            response = await send(client, {"type": "event", "payload": payload})
            assert response.status_code in (200, 400), (field, value, response.text)
            if response.status_code == 400:
                assert_api_error(response, 400, "bad-request")
