"""`footfall report`: last week's summary, e-mailed to a local SMTP server (aiosmtpd) or printed, with the page's numbers."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import collector
import footfall.app
import footfall.cli
import footfall.report
from conftest import CHROME, FIREFOX, Clock, flush, free_port, open_client

UTC = dt.timezone.utc


class Inbox:
    """What the local SMTP server received: (envelope sender, recipients, message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


async def fill_last_week(db_path: Path, website: str, now: float) -> dict[str, Any]:
    """Visits on three days of last week and one the week before; return /api/summary's numbers for last week."""
    monday, sunday = footfall.report.last_week(now, UTC)
    config = collector.Config(db=str(db_path), timezone="UTC")
    async with open_client(footfall.app.create_app(config, Clock(now))) as client:
        days = [monday - dt.timedelta(days=3), monday, monday + dt.timedelta(days=2), sunday]
        for i, day in enumerate(days):
            at = int(dt.datetime.combine(day, dt.time(10), tzinfo=UTC).timestamp())
            for n, path in enumerate(["/", "/pricing", "/docs"][: 1 + i % 3]):
                body = {"type": "event", "payload": {"website": website, "url": f"https://site.example{path}",
                                                     "timestamp": at + n * 60, "referrer": "https://news.example/"}}  # fmt: skip
                headers = {"user-agent": (FIREFOX, CHROME)[i % 2], "x-forwarded-for": f"203.0.113.{i + 1}"}
                assert (await client.post("/api/send", json=body, headers=headers)).status_code == 200
            if i == 1:  # a signup in Monday's visit
                body = {"type": "event", "payload": {"website": website, "url": "https://site.example/pricing",
                                                     "timestamp": at + 90, "name": "signup"}}  # fmt: skip
                assert (await client.post("/api/send", json=body, headers=headers)).status_code == 200
        await flush(client)
        response = await client.get(
            "/api/summary", params={"website": website, "start": monday.isoformat(), "end": sunday.isoformat()}
        )
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]


@pytest.mark.anyio
async def test_report_is_mailed_with_the_pages_numbers(db_path: Path, website: str, smtp: tuple[int, Inbox]) -> None:
    """The e-mail (text and HTML) carries the summary page's numbers for last week, each with its change."""
    port, inbox = smtp
    page = await fill_last_week(db_path, website, time.time())
    totals = page["totals"]
    assert totals["visits"]["value"] == 3 and totals["visits"]["previous"] == 1  # the three days; the week before
    result = CliRunner().invoke(
        footfall.cli.cli,
        ["report", "--db", str(db_path), "--site", website, "--email", "owner@example.com", "--email", "team@example.com",
         "--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--no-starttls", "--from", "stats@example.com"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sent 'footfall: test, week of" in result.output
    ((sender, recipients, message),) = inbox.messages
    assert sender == "stats@example.com" and recipients == ["owner@example.com", "team@example.com"]
    assert message["Subject"].startswith("footfall: test, week of ")
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content()
    pageviews, before = totals["pageviews"]["value"], totals["pageviews"]["previous"]
    assert f"Pageviews:{pageviews:>17,}   +{(pageviews - before) / before * 100:.0f}% (before: {before})" in text
    assert "Visits:                   3   +200% (before: 1)" in text
    for row in page["lists"]["page"]["rows"]:
        assert f"{row['count']:>8,}  {row['share'] * 100:3.0f}%  {row['value']}" in text
        assert f"<td>{row['value']}</td><td align='right'>{row['count']:,}</td>" in html
    (goal,) = page["goals"]["rows"]
    assert f"{goal['count']:>8,}  {goal['visitors']:>8,}  {goal['conversion'] * 100:5.1f}%  signup" in text
    assert "Direct / none" not in text and "news.example" in text  # every visit came from the newsletter


def test_report_without_smtp_is_printed(db_path: Path, website: str) -> None:
    """Without --smtp-host the report goes to standard output; a refused STARTTLS is one line, no traceback."""
    collector.prepare_database(str(db_path))
    printed = CliRunner().invoke(footfall.cli.cli, ["report", "--db", str(db_path), "--site", website])
    assert printed.exit_code == 0, printed.output
    assert printed.output.startswith("Subject: footfall: test, week of ") and "Visitors:" in printed.output
    unknown = "00000000-0000-4000-8000-000000000000"
    missing = CliRunner().invoke(footfall.cli.cli, ["report", "--db", str(db_path), "--site", unknown])
    assert (
        missing.exit_code == 1 and missing.output.strip() == f"footfall: error: no website {unknown}; see `footfall site list`"
    )
    malformed = CliRunner().invoke(footfall.cli.cli, ["report", "--db", str(db_path), "--site", "nope"])
    assert malformed.exit_code == 2 and "nope" in malformed.output and "Traceback" not in malformed.output


def test_starttls_is_required_by_default(db_path: Path, website: str, smtp: tuple[int, Inbox]) -> None:
    """A server without STARTTLS gets nothing (the password never goes out in the clear); the error is one line."""
    port, inbox = smtp
    collector.prepare_database(str(db_path))
    result = CliRunner().invoke(
        footfall.cli.cli,
        ["report", "--db", str(db_path), "--email", "a@example.com", "--smtp-host", "127.0.0.1", "--smtp-port", str(port)],
        env={"FOOTFALL_SMTP_PASSWORD": ""},
    )
    assert result.exit_code == 1 and inbox.messages == []
    assert result.output.startswith(f"footfall: error: could not send the report through 127.0.0.1:{port}: ")
    assert "STARTTLS" in result.output and result.output.count("\n") == 1
    assert "Traceback" not in result.output
