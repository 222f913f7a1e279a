"""Sessions and visits: Umami's session-id formula, random per-period salts, and server-side 30-minute visits."""

from __future__ import annotations

import contextlib
import hashlib
import random
import uuid
from pathlib import Path

import pytest

import collector
import footfall.app
from conftest import FIREFOX, T0, AppClient, Clock, flush, hit, open_client, rows

pytestmark = pytest.mark.anyio


def sha512(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()


# The reference's test vector (umami-collect-api.md §3).
VECTOR_SECRET = sha512("test-secret")  # Umami's secret() is sha512-hex of APP_SECRET
VECTOR_WEBSITE = "b59e9c65-ae32-47f1-8400-119fcf4861c4"
VECTOR_IP = "203.0.113.7"
VECTOR_SALT = sha512("Fri, 01 May 2026 00:00:00 GMT")
VECTOR_SESSION = "db605238-1896-5e39-a096-f9f2d394feb6"


def test_umami_session_vector() -> None:
    """derive_session_id reproduces Umami's sessionId, its hourly visit id and its distinct-id session."""
    assert collector.derive_session_id(VECTOR_WEBSITE, VECTOR_IP, FIREFOX, VECTOR_SALT, VECTOR_SECRET) == VECTOR_SESSION
    hour_salt = sha512("Thu, 14 May 2026 10:00:00 GMT")
    assert collector.umami_uuid(VECTOR_SESSION, hour_salt, secret=VECTOR_SECRET) == "d018fc3f-8f6a-51fd-aa67-5499a01f0f1d"
    assert collector.derive_session_id(VECTOR_WEBSITE, VECTOR_IP, FIREFOX, VECTOR_SALT, VECTOR_SECRET, "user-42") == (
        "f06a85fe-7d7f-596d-8ac8-d9ad05352dd4"
    )


def test_umami_uuid_is_the_standard_uuid5() -> None:
    """The hand-written UUIDv5 equals the standard library's for many names, including empty and non-ASCII parts."""
    rng = random.Random(5)
    for n in range(500):
        parts = ["".join(rng.choice("ab€✓0-:/ ") for _ in range(rng.randrange(0, 40))) for _ in range(rng.randrange(1, 5))]
        parts[0] = parts[0] if n % 7 else None
        name = "".join(p or "" for p in parts) + VECTOR_SECRET
        expected = str(uuid.uuid5(uuid.NAMESPACE_DNS, sha512(name)))
        assert collector.umami_uuid(*parts, secret=VECTOR_SECRET) == expected


async def test_session_vector_through_http(db_path: Path, clock: Clock) -> None:
    """With Umami's secret and May 2026 salt in the database, a request from 203.0.113.7 gets Umami's sessionId."""
    collector.prepare_database(str(db_path), now=T0)
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        conn.execute("UPDATE setting SET value = ? WHERE name = 'install_secret'", (VECTOR_SECRET,))
        conn.execute("UPDATE salt SET salt = ? WHERE period = 'month:2026-05-01'", (VECTOR_SALT,))
        conn.execute("INSERT INTO website (website_id, name, created_at) VALUES (?, 'v', 0)", (VECTOR_WEBSITE,))
    app = footfall.app.create_app(collector.Config(db=str(db_path)), clock)
    async with open_client(app, peer=VECTOR_IP) as client:
        response = await client.post("/api/send", json=hit(VECTOR_WEBSITE, url="/"), headers={"User-Agent": FIREFOX})
        by_id = await client.post(
            "/api/send", json=hit(VECTOR_WEBSITE, url="/", id="user-42"), headers={"User-Agent": FIREFOX}
        )
    assert response.json()["sessionId"] == VECTOR_SESSION
    assert by_id.json()["sessionId"] == "f06a85fe-7d7f-596d-8ac8-d9ad05352dd4"


async def send(client: AppClient, website: str, agent: str = FIREFOX, **payload: object) -> dict[str, str]:
    response = await client.post("/api/send", json=hit(website, url="/", **payload), headers={"User-Agent": agent})
    assert response.status_code == 200, response.text
    return response.json()


async def test_visit_splits_after_30_minutes_of_silence(client: AppClient, clock: Clock, db_path: Path, website: str) -> None:
    """Events 29 minutes apart stay in one visit, even across a clock hour; 31 minutes of silence start a new one."""
    clock.now = T0 + 45 * 60  # 10:45
    first = await send(client, website)
    clock.advance(29 * 60)  # 11:14: Umami would split here at 11:00
    second = await send(client, website)
    clock.advance(31 * 60)
    third = await send(client, website)
    assert first["sessionId"] == second["sessionId"] == third["sessionId"]
    assert first["visitId"] == second["visitId"] != third["visitId"]
    await flush(client)
    assert rows(db_path, "SELECT pageviews, duration_s FROM visits ORDER BY started_at") == [(2, 29 * 60), (1, 0)]


async def test_visits_survive_a_restart(db_path: Path, clock: Clock, website: str) -> None:
    """A visit still open when footfall restarts goes on after it (open visits are reloaded at start-up)."""
    config = collector.Config(db=str(db_path))
    async with open_client(footfall.app.create_app(config, clock)) as client:
        before = await send(client, website)
    clock.advance(10 * 60)
    async with open_client(footfall.app.create_app(config, clock)) as client:
        after = await send(client, website)
        clock.advance(40 * 60)
        later = await send(client, website)
    assert after["visitId"] == before["visitId"] != later["visitId"]
    assert rows(db_path, "SELECT count(*) FROM visit") == [(2,)]


async def test_different_clients_are_different_sessions(client: AppClient, website: str) -> None:
    """Another user agent (or IP) is another session and visit; the same distinct id is one session everywhere."""
    a = await send(client, website)
    b = await send(client, website, agent=FIREFOX.replace("125.0", "126.0"))
    assert a["sessionId"] != b["sessionId"] and a["visitId"] != b["visitId"]
    c = await send(client, website, id="person")
    d = await send(client, website, agent=FIREFOX.replace("125.0", "126.0"), id="person")
    assert c["sessionId"] == d["sessionId"]


async def test_first_seen_session_attributes_stick(client: AppClient, db_path: Path, website: str) -> None:
    """A session's screen and language are those of its first hit, as in Umami."""
    first = await send(client, website, screen="1280x720", language="en-GB")
    await send(client, website, screen="800x600", language="fr-FR")
    await flush(client)
    assert rows(db_path, "SELECT screen, language FROM sessions WHERE session_id = ?", (first["sessionId"],)) == [
        ("1280x720", "en-GB")
    ]


async def test_salt_rotation_changes_sessions_and_deletes_old_salts(db_path: Path, clock: Clock, website: str) -> None:
    """With daily rotation the same visitor is a new session the next day, and yesterday's salt is deleted after grace."""
    config = collector.Config(db=str(db_path), salt_rotation="day")
    async with open_client(footfall.app.create_app(config, clock)) as client:
        today = await send(client, website)
        assert rows(db_path, "SELECT period FROM salt WHERE period LIKE 'day:%' ORDER BY 1") == [
            ("day:2026-05-14",),
            ("day:2026-05-15",),
        ]
        assert rows(db_path, "SELECT count(*) FROM salt WHERE period LIKE 'month:%'") == [(0,)]  # the other rotation's
        clock.now = T0 + 14 * 3600 + 60  # 2026-05-15 00:01
        tomorrow = await send(client, website)
        assert today["sessionId"] != tomorrow["sessionId"]
        clock.now = T0 + 14 * 3600 + collector.SALT_GRACE_SECONDS + 1
        await client.app.state.collection.upkeep()
        assert rows(db_path, "SELECT period FROM salt ORDER BY 1") == [("day:2026-05-15",), ("day:2026-05-16",)]
        late = await send(client, website, timestamp=int(T0))  # yesterday's salt is gone: today's is used
        assert late["sessionId"] == tomorrow["sessionId"]


async def test_a_deleted_salt_is_gone_from_the_file(db_path: Path, clock: Clock, website: str) -> None:
    """Once its period is over a salt is deleted for good: its bytes appear nowhere in the database file or its WAL
    (secure_delete zeroes the row; the WAL is truncated after the delete), while the current salt still does."""
    config = collector.Config(db=str(db_path), salt_rotation="day")
    async with open_client(footfall.app.create_app(config, clock)) as client:
        await send(client, website)
        (old,), (current,) = rows(db_path, "SELECT salt FROM salt ORDER BY period")
        clock.now = T0 + 14 * 3600 + collector.SALT_GRACE_SECONDS + 1
        await client.app.state.collection.upkeep()
        assert rows(db_path, "SELECT count(*) FROM salt WHERE salt = ?", (old,)) == [(0,)]
        raw = b"".join(p.read_bytes() for p in db_path.parent.glob("footfall.db*"))
        assert current.encode() in raw  # the scan does see salts that are kept
        assert old.encode() not in raw


async def test_late_event_in_grace_window_keeps_its_period(db_path: Path, clock: Clock, website: str) -> None:
    """Within the grace window an event stamped in the previous period still joins that period's session."""
    config = collector.Config(db=str(db_path), salt_rotation="day")
    async with open_client(footfall.app.create_app(config, clock)) as client:
        yesterday = await send(client, website)
        clock.now = T0 + 14 * 3600 + 60
        late = await send(client, website, timestamp=int(T0) + 60)
    assert late["sessionId"] == yesterday["sessionId"]


def test_salts_are_random_per_install(tmp_path: Path) -> None:
    """Two installs give the same visitor different session ids: salts and secrets are random, not derived from dates."""
    a = collector.prepare_database(str(tmp_path / "a.db"), now=T0)
    b = collector.prepare_database(str(tmp_path / "b.db"), now=T0)
    assert a.secret != b.secret
    assert a.salts["month:2026-05-01"][0] != b.salts["month:2026-05-01"][0]
    assert len(a.salts["month:2026-05-01"][0]) == 64


@pytest.mark.parametrize(
    ("rotation", "at", "key", "start", "end"),
    [
        ("day", "2026-05-14T10:00:00", "day:2026-05-14", "2026-05-14", "2026-05-15"),
        ("week", "2026-05-14T10:00:00", "week:2026-05-10", "2026-05-10", "2026-05-17"),  # weeks start on Sunday, as Umami
        ("week", "2026-05-10T00:00:00", "week:2026-05-10", "2026-05-10", "2026-05-17"),
        ("month", "2026-12-31T23:59:59", "month:2026-12-01", "2026-12-01", "2027-01-01"),
    ],
)
def test_salt_periods(rotation: str, at: str, key: str, start: str, end: str) -> None:
    """Period boundaries are UTC days, Sunday-started weeks and calendar months."""
    import datetime as dt

    def ts(text: str) -> float:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()

    assert collector.salt_period(rotation, ts(at)) == (key, ts(start + "T00:00:00"), ts(end + "T00:00:00"))


def test_visit_tracker_forgets_idle_sessions() -> None:
    """Eviction drops sessions idle past the timeout, and the size cap holds."""
    tracker = collector.VisitTracker(timeout=1800, secret="s", max_sessions=3)
    for i in range(5):
        tracker.visit_for(f"s{i}", 1000 + i)
    assert len(tracker) == 3
    tracker.evict(1000 + 4 + 1801)
    assert len(tracker) == 0


async def test_an_event_joins_a_visit_back_by_five_minutes_at_most(
    client: AppClient, clock: Clock, db_path: Path, website: str
) -> None:
    """An event 4 minutes before its visit's first joins it (and becomes its start); 6 minutes before starts its own."""
    now = int(clock.now)
    first = await send(client, website, timestamp=now)
    skewed = await send(client, website, timestamp=now - 4 * 60)
    early = await send(client, website, timestamp=now - 4 * 60 - 6 * 60)
    assert first["sessionId"] == skewed["sessionId"] == early["sessionId"]
    assert first["visitId"] == skewed["visitId"] != early["visitId"]
    await flush(client)
    # The stored visit is what the summary counts: started_at moved back to its earliest event, as the view says.
    assert rows(db_path, "SELECT started_at FROM visit ORDER BY started_at") == [(now - 10 * 60,), (now - 4 * 60,)]
    assert rows(db_path, "SELECT pageviews, duration_s FROM visits ORDER BY started_at") == [(1, 0), (2, 4 * 60)]


async def test_no_visit_spans_more_than_24_hours(client: AppClient, clock: Clock, db_path: Path, website: str) -> None:
    """A session active every 29 minutes for 30 hours makes a 24-hour visit, then a new one."""
    start = int(clock.now) - 30 * 3600
    visits = []
    for step in range(30 * 60 // 29 + 1):
        visits.append((await send(client, website, timestamp=start + step * 29 * 60))["visitId"])
    await flush(client)
    assert len(set(visits)) == 2
    spans = rows(db_path, "SELECT duration_s FROM visits ORDER BY started_at")
    assert [s for (s,) in spans] == [49 * 29 * 60, (62 - 50) * 29 * 60]  # 49 gaps fit in 24 h (49 × 29 min = 23.7 h)


async def test_events_sent_backwards_for_a_year_stay_separate_visits(db_path: Path, website: str) -> None:
    """17,505 events of one session sent with timestamps 30 minutes apart going back a year (an attack that once made one
    364-day visit and a 39.8 s summary) are 17,505 visits of one pageview, none longer than 24 h, and once upkeep has
    refreshed the rollups the year's summary computes within a 2-second budget (--summary-timeout 2, past which it would
    answer 503; bench/hostile.py measures the times)."""
    now = collector.DAY_SECONDS * 20_600  # 2026-05-26T00:00Z
    config = collector.Config(db=str(db_path), embedded_geo=False, summary_timeout=2)
    count = 17_505
    async with open_client(footfall.app.create_app(config, Clock(now))) as client:
        for first in range(0, count, 500):
            batch = [hit(website, url=f"/p{i % 50}", timestamp=now - i * 1800) for i in range(first, min(count, first + 500))]
            response = await client.post("/api/batch", json=batch, headers={"User-Agent": FIREFOX})
            assert response.status_code == 200 and response.json()["errors"] == 0, response.text
        await flush(client)
        (sessions, visits, longest), *_ = rows(
            db_path, "SELECT count(DISTINCT session_id), count(*), max(duration_s) FROM visits"
        )
        assert (sessions, visits, longest) == (1, count, 0)
        assert await client.app.state.summary.refresh() == count  # what upkeep does every 10 s
        params = {"website": website, "start": str(now - 365 * collector.DAY_SECONDS), "end": str(now + 3600)}
        response = await client.get("/api/summary", params=params)
        assert response.status_code == 200, response.text
        totals = response.json()["totals"]
    assert (totals["visits"]["value"], totals["pageviews"]["value"], totals["visitors"]["value"]) == (count, count, 1)
    assert totals["bounce_rate"]["value"] == 1.0 and totals["avg_duration_s"]["value"] == 0.0
