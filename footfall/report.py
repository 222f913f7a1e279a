"""The weekly e-mail: last week's summary as plain text and simple HTML, sent over SMTP (or printed).

Owns: which week "last week" is, the report's text and HTML, and sending it (stdlib smtplib, STARTTLS). Its numbers
are the summary page's for the same week (footfall.summary.build_summary over the rollups). Imports collector,
footfall.rollups and footfall.summary.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, NamedTuple

from collector import ConfigError, connect, load_zone
from footfall.rollups import bucket_shift, refresh_rollups, stored_alignment
from footfall.summary import HEADLINES, Site, build_summary, resolve_range

#: Rows of each list in the e-mail.
REPORT_ROWS = 5


_LISTS = (("page", "Pages", "pageviews"), ("referrer", "Referrers", "visits"), ("country", "Countries", "visits"))


class Report(NamedTuple):
    subject: str
    text: str
    html: str
    summaries: list[dict[str, Any]]


def last_week(now: float, zone: dt.tzinfo) -> tuple[dt.date, dt.date]:
    """Monday and Sunday of the last whole week (Monday to Sunday) before ``now``, in ``zone``."""
    today = dt.datetime.fromtimestamp(now, zone).date()
    monday = today - dt.timedelta(days=today.weekday() + 7)
    return monday, monday + dt.timedelta(days=6)


def _value(name: str, value: float) -> str:
    if name == "bounce_rate":
        return f"{value * 100:.0f}%"
    if name == "avg_duration_s":
        s = int(round(value))
        return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"
    if name == "views_per_visit":
        return f"{value:.2f}"
    return f"{int(value):,}"


def _change(change: float | None, value: float) -> str:
    if change is None:
        return "new" if value else "–"
    return f"{'+' if change > 0 else '−' if change < 0 else '±'}{abs(change) * 100:.0f}%"


def _label(metric: str, row: dict[str, Any], names: dict[str, str]) -> str:
    if row.get("direct"):
        return "Direct / none"
    return names.get(row["value"], row["value"]) if metric == "country" else row["value"]


def build_report(
    db: str, website_id: str | None, now: float | None = None, timezone: str | None = None, names: dict[str, str] | None = None
) -> Report:
    """Last week's summary of one website (or of every active one) as an e-mail's subject, text and HTML.

    Weeks are those of the server's time zone (``timezone`` only counts before the server ever made rollups).
    """
    now = time.time() if now is None else now
    names = names or {}
    with contextlib.closing(connect(db)) as conn:
        alignment = stored_alignment(conn)
        # The server's time zone (what its rollups are aligned to); another would make the refresh rebuild them all.
        zone = load_zone(alignment[1] if alignment else timezone or "UTC")
        shift = bucket_shift(zone, now)
        sql = "SELECT website_key, website_id, name, domain FROM website WHERE deleted_at IS NULL"
        sites = [Site(*row) for row in conn.execute(sql + " ORDER BY name, website_id")]
        if website_id is not None:
            sites = [s for s in sites if s.id == website_id.lower()]
            if not sites:
                raise ConfigError(f"no website {website_id}; see `footfall site list`")
        refresh_rollups(conn, shift, zone)
        monday, sunday = last_week(now, zone)
        period = resolve_range(None, monday.isoformat(), sunday.isoformat(), zone, now, shift)
        summaries = [build_summary(conn, site, period, {}, now, shift) for site in sites]
    week = f"{monday:%a %d %b} – {sunday:%a %d %b %Y}"
    subject = f"footfall: {sites[0].name if len(sites) == 1 else f'{len(sites)} websites'}, week of {monday:%d %b %Y}"
    text: list[str] = [f"Last week, {week} ({zone}), compared with the week before.", ""]
    parts: list[str] = [f"<p>Last week, {html.escape(week)} ({html.escape(str(zone))}), compared with the week before.</p>"]
    for summary in summaries:
        site = summary["website"]
        title = site["name"] + (f" ({site['domain']})" if site["domain"] else "")
        text += [title, "=" * len(title)]
        parts.append(f"<h2>{html.escape(title)}</h2><table>")
        for key, label in HEADLINES:
            cell = summary["totals"][key]
            value, change = _value(key, cell["value"]), _change(cell["change"], cell["value"])
            previous = _value(key, cell["previous"])
            text.append(f"{label + ':':<17}{value:>10}   {change} (before: {previous})")
            parts.append(
                f"<tr><th align='left'>{label}</th><td align='right'><b>{html.escape(value)}</b></td>"
                f"<td>{html.escape(change)} (before: {html.escape(previous)})</td></tr>"
            )
        parts.append("</table>")
        for metric, heading, unit in _LISTS:
            rows = summary["lists"][metric]["rows"][:REPORT_ROWS]
            text += ["", f"{heading} ({unit}, share)"]
            parts.append(f"<h3>{heading}</h3>")
            if not rows:
                text.append("  none")
                parts.append("<p>none</p>")
                continue
            parts.append(f"<table><tr><th align='left'>{heading[:-1]}</th><th align='right'>{unit}</th><th>share</th></tr>")
            for row in rows:
                label = _label(metric, row, names)
                text.append(f"  {row['count']:>8,}  {row['share'] * 100:3.0f}%  {label}")
                parts.append(
                    f"<tr><td>{html.escape(label)}</td><td align='right'>{row['count']:,}</td>"
                    f"<td align='right'>{row['share'] * 100:.0f}%</td></tr>"
                )
            parts.append("</table>")
        goals = summary["goals"]["rows"][:REPORT_ROWS]
        if goals:
            text += ["", "Goals (count, visitors, conversion)"]
            parts.append(
                "<h3>Goals</h3><table><tr><th align='left'>Event</th><th>count</th><th>visitors</th><th>conversion</th></tr>"
            )
            for goal in goals:
                name = goal["value"] or "(no name)"
                text.append(f"  {goal['count']:>8,}  {goal['visitors']:>8,}  {goal['conversion'] * 100:5.1f}%  {name}")
                parts.append(
                    f"<tr><td>{html.escape(name)}</td><td align='right'>{goal['count']:,}</td>"
                    f"<td align='right'>{goal['visitors']:,}</td><td align='right'>{goal['conversion'] * 100:.1f}%</td></tr>"
                )
            parts.append("</table>")
        text.append("")
    body = "<!doctype html><html><body style='font-family: sans-serif'>" + "".join(parts) + "</body></html>"
    return Report(subject, "\n".join(text).rstrip() + "\n", body, summaries)


class SmtpSettings(NamedTuple):
    host: str
    port: int = 587
    user: str | None = None
    password: str | None = None
    starttls: bool = True
    sender: str = "footfall@localhost"
    timeout: float = 30.0


def send_report(report: Report, to: list[str], smtp: SmtpSettings) -> None:
    """Send ``report`` as a text and HTML e-mail; STARTTLS (verified) before logging in, unless turned off."""
    message = EmailMessage()
    message["Subject"] = report.subject
    message["From"] = smtp.sender
    message["To"] = ", ".join(to)
    message["Message-ID"] = make_msgid(domain="footfall.invalid")
    message.set_content(report.text)
    message.add_alternative(report.html, subtype="html")
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise ConfigError(f"could not send the report through {smtp.host}:{smtp.port}: {exc}") from None
