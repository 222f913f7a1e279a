"""The ``footfall`` command (click): serve, site, password, backup, check, prune, forget, export, stats, import.

Owns: options and their help, one-line error messages, exit codes. Each command calls a plain function of the module
that owns the work. Imports collector and any footfall module; nothing imports it (the console script points here).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import signal
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from collector import (
    SCHEMA_VERSION,
    SETTINGS,
    UUID_RE,
    ConfigError,
    __version__,
    asset_path,
    connect,
    env_name,
    load_config,
    prepare_database,
)
from footfall.app import create_app, sd_notify
from footfall.auth import MIN_PASSWORD_CHARS, hash_password, new_share_token
from footfall.geo import MaxMindGeo
from footfall.ops import (
    backup_database,
    check_database,
    expire_backups,
    export_events,
    forget_person,
    parse_age,
    prune_events,
    site_stats,
)
from footfall.rollups import set_setting
from footfall.server import uvicorn_config
from footfall.umami import drop_empty_site, export_umami, import_umami


def _setting_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add one ``--name`` option per SETTINGS entry (None when not given, so the environment can fill it in)."""
    for setting in reversed(SETTINGS):
        flag = "--" + setting.name.replace("_", "-")
        help_text = f"{setting.help} [env {env_name(setting)}; default {setting.default!r}]"
        if isinstance(setting.default, bool):
            fn = click.option(f"{flag}/--no-{flag[2:]}", setting.name, default=None, help=help_text)(fn)
        else:
            kind = click.Choice(setting.choices) if setting.choices else None
            fn = click.option(flag, setting.name, default=None, type=kind, help=help_text)(fn)
    return fn


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(asctime)s level=%(levelname)s %(message)s")


@click.group(invoke_without_command=True)
@click.version_option(__version__, prog_name="footfall")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """footfall: Umami-compatible web analytics in one SQLite file.

    Run without a command to serve with the defaults (same as `footfall serve`).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@cli.command()
@_setting_options
def serve(**options: Any) -> None:
    """Collect events over HTTP until stopped (SIGTERM or Ctrl-C drain the queue first).

    Example: footfall serve --db /var/lib/footfall/footfall.db --port 8000
    """
    import uvicorn

    try:
        config = load_config(options, os.environ)
        prepared = prepare_database(config.db, config.salt_rotation)
        if config.geoip_db:
            MaxMindGeo(config.geoip_db).close()  # fail now, with a clear message, rather than inside the server
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _configure_logging(config.log_level)
    base = f"http://{config.host}:{config.port}"
    click.echo(f"footfall {__version__} listening on {base}, database {os.path.abspath(config.db)}")
    if prepared.default_website_id:
        click.echo(f"Created website 'default' with id {prepared.default_website_id}. Paste this into your pages:")
        click.echo(f'  <script defer src="{base}/script.js" data-website-id="{prepared.default_website_id}"></script>')

    class NotifyingServer(uvicorn.Server):
        """uvicorn's server, telling systemd when it is listening (READY=1) and when it starts to drain (STOPPING=1)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                sd_notify(f"READY=1\nSTATUS=listening on {base}")

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            sd_notify("STOPPING=1\nSTATUS=committing queued events")
            await super().shutdown(sockets)

    server = NotifyingServer(uvicorn_config(create_app(config), config))  # limits and timeouts: footfall.server
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler that was in place before it started.
    # A drained, committed shutdown is a success, so that handler does nothing and the exit code is 0 (systemd expects it).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    server.run()
    if not server.started:
        raise click.ClickException(f"could not serve on {base}; is the port free?")


def _require_database(db: str) -> None:
    """Commands that only read or copy a database refuse a path with none, rather than creating an empty one."""
    if not Path(db).exists():
        raise click.ClickException(f"no database at {db}; pass --db or set FOOTFALL_DB")


def _open_for_cli(db: str) -> sqlite3.Connection:
    try:
        prepare_database(db)
        return connect(db)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


_db_option = click.option(
    "--db",
    default=lambda: os.environ.get("FOOTFALL_DB", "footfall.db"),
    show_default="footfall.db",
    help="Database file [env FOOTFALL_DB].",
)


@cli.group()
def site() -> None:
    """Add, list and remove websites."""


@site.command("add")
@click.argument("name")
@click.option("--domain", help="The site's main domain, e.g. example.com.")
@click.option("--id", "website_id", help="Keep this website UUID (e.g. your Umami website id, so snippets stay the same).")
@_db_option
def site_add(name: str, domain: str | None, website_id: str | None, db: str) -> None:
    """Add a website and print its UUID (only the UUID, so scripts can capture it).

    Example: footfall site add blog --domain blog.example.com
    """
    if not 1 <= len(name) <= 100:
        raise click.ClickException("NAME must be 1 to 100 characters")
    if website_id is not None:
        if not UUID_RE.fullmatch(website_id):
            raise click.ClickException(f"--id must be a UUID like {uuid.uuid4()}, not {website_id!r}")
        website_id = website_id.lower()
    website_id = website_id or str(uuid.uuid4())
    conn = _open_for_cli(db)
    try:
        conn.execute(
            "INSERT INTO website (website_id, name, domain, created_at) VALUES (?, ?, ?, ?)",
            (website_id, name, domain, int(time.time())),
        )
    except sqlite3.IntegrityError:
        raise click.ClickException(f"a website with id {website_id} already exists; `footfall site list` shows it") from None
    finally:
        conn.close()
    click.echo(website_id)


@site.command("list")
@_db_option
def site_list(db: str) -> None:
    """List websites: id, name, domain, and whether removed.

    Example: footfall site list --db footfall.db
    """
    conn = _open_for_cli(db)
    try:
        rows = conn.execute(
            "SELECT website_id, name, ifnull(domain, ''), deleted_at FROM website ORDER BY website_key"
        ).fetchall()
    finally:
        conn.close()
    for website_id, name, domain, deleted_at in rows:
        click.echo("\t".join((website_id, name, domain, "removed" if deleted_at else "active")))


@site.command("remove")
@click.argument("website_id")
@_db_option
def site_remove(website_id: str, db: str) -> None:
    """Remove a website: its data stays, further events for it get 'Website not found.'.

    Example: footfall site remove 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c
    """
    conn = _open_for_cli(db)
    try:
        changed = conn.execute(
            "UPDATE website SET deleted_at = ? WHERE website_id = ? AND deleted_at IS NULL",
            (int(time.time()), website_id.lower()),
        ).rowcount
    finally:
        conn.close()
    if not changed:
        raise click.ClickException(f"no active website with id {website_id}; `footfall site list` shows the ids")
    click.echo(f"removed {website_id.lower()}")


@site.command("retention")
@click.argument("website_id")
@click.argument("days")
@_db_option
def site_retention(website_id: str, days: str, db: str) -> None:
    """Keep a site's events for DAYS days (deleted daily by the running server), or 'off' to keep everything.

    Example: footfall site retention 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c 400
    """
    value = None if days.lower() == "off" else int(days) if days.isdigit() and int(days) > 0 else None
    if value is None and days.lower() != "off":
        raise click.ClickException(f"DAYS must be a positive number of days or 'off', not {days!r}")
    conn = _open_for_cli(db)
    try:
        changed = conn.execute(
            "UPDATE website SET retention_days = ? WHERE website_id = ?", (value, website_id.lower())
        ).rowcount
    finally:
        conn.close()
    if not changed:
        raise click.ClickException(f"no website with id {website_id}; `footfall site list` shows the ids")
    click.echo(f"{website_id.lower()}: events kept {'forever' if value is None else f'{value} days'}")


@site.command("share")
@click.argument("website_id")
@click.option("--revoke", is_flag=True, help="Delete the site's share link; its URL stops working at once.")
@click.option(
    "--base-url",
    default=lambda: os.environ.get("FOOTFALL_PUBLIC_URL", "http://127.0.0.1:8000"),
    show_default="http://127.0.0.1:8000",
    help="Where footfall is reached [env FOOTFALL_PUBLIC_URL].",
)
@_db_option
def site_share(website_id: str, revoke: bool, base_url: str, db: str) -> None:
    """Print a public, read-only link to a site's summary page (made once, then the same link), or --revoke it.

    Anyone with the link sees that site's summary, nothing else. Example:
    footfall site share 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c --base-url https://stats.example.org
    """
    conn = _open_for_cli(db)
    try:
        row = conn.execute(
            "SELECT website_key FROM website WHERE website_id = ? AND deleted_at IS NULL", (website_id.lower(),)
        ).fetchone()
        if row is None:
            raise click.ClickException(f"no website with id {website_id}; `footfall site list` shows the ids")
        if revoke:
            gone = conn.execute("DELETE FROM share_link WHERE website_key = ?", row).rowcount
            click.echo(f"{website_id.lower()}: share link revoked" if gone else f"{website_id.lower()}: had no share link")
            return
        conn.execute(
            "INSERT OR IGNORE INTO share_link (token, website_key, created_at) VALUES (?, ?, ?)",
            (new_share_token(), row[0], int(time.time())),
        )
        token = conn.execute("SELECT token FROM share_link WHERE website_key = ?", row).fetchone()[0]
    finally:
        conn.close()
    click.echo(f"{base_url.rstrip('/')}/share/{token}")


@cli.command()
@click.option("--print-hash", is_flag=True, help="Print the hash (for FOOTFALL_PASSWORD_HASH) instead of storing it.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@_db_option
def password(print_hash: bool, from_stdin: bool, db: str) -> None:
    """Set the summary page's password (stored as a salted scrypt hash; logs every browser out).

    Until a password is set, the summary page answers only browsers on this machine. Example: footfall password
    """
    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    if len(secret) < MIN_PASSWORD_CHARS:
        raise click.ClickException(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    hashed = hash_password(secret)
    if print_hash:
        click.echo(hashed)
        return
    conn = _open_for_cli(db)
    try:
        set_setting(conn, "password_hash", hashed)
    finally:
        conn.close()
    click.echo("Password set. Log in at /login (a running footfall picks it up within seconds).")


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _waiting(console: Any) -> Callable[[int, int], None]:
    """Tell the person running prune or forget that the database is locked and the command tries again."""
    return lambda attempt, attempts: console.print(
        f"The database is locked by another writer; trying again ({attempt + 1} of {attempts})…"
    )


def _checked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an operation; its ConfigError or database error becomes a one-line CLI error."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"database error: {exc}") from None


@cli.command()
@click.argument("dest", type=click.Path())
@click.option("--keep-days", type=click.IntRange(min=1), help="Then delete footfall-*.db backups in DEST older than this.")
@_db_option
def backup(dest: str, keep_days: int | None, db: str) -> None:
    """Copy the database consistently while footfall keeps running (into DEST: a new file, or a directory, created
    when DEST ends in / or --keep-days is given).

    Example: footfall backup --db /var/lib/footfall/footfall.db --keep-days 14 /var/lib/footfall/backups/
    """
    _require_database(db)
    if keep_days is not None:
        Path(dest).mkdir(parents=True, exist_ok=True)
    with _console().status(f"Backing up {db}…"):
        target = _checked(backup_database, db, dest)
    click.echo(f"{target}\t{target.stat().st_size} bytes")
    if keep_days is not None:
        for old in expire_backups(target.parent, keep_days):
            click.echo(f"deleted {old}")


@cli.command()
@_db_option
def check(db: str) -> None:
    """Check the database: integrity, schema version, row counts and salt ages; exit 1 if it is damaged.

    Example: footfall check --db footfall.db
    """
    _require_database(db)
    report = _checked(check_database, db)
    click.echo(f"integrity: {report['integrity']}")
    click.echo(f"schema version: {report['schema_version']} (this footfall: {SCHEMA_VERSION})")
    for table, count in report["rows"].items():
        click.echo(f"rows {table}: {count}")
    for salt in report["salts"]:
        click.echo(f"salt {salt['period']}: {salt['age_days']} days old")
    if report["integrity"] != "ok":
        raise click.ClickException("the database is damaged; restore a backup (see README, Backups)")


@cli.command()
@click.option("--older-than", "older_than", required=True, help="Age of events to delete, e.g. 400d, 12w, 36h.")
@click.option("--site", "website_id", help="Only this website's events.")
@_db_option
def prune(older_than: str, website_id: str | None, db: str) -> None:
    """Delete events older than an age, in small transactions so a running footfall never stalls.

    Example: footfall prune --older-than 400d --site 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    seconds = _checked(parse_age, older_than)
    with Progress(SpinnerColumn(), TextColumn("{task.description} {task.completed} events"), console=_console()) as bar:
        task = bar.add_task("Deleting", total=None)
        counts = _checked(
            prune_events, db, seconds, website_id, progress=lambda n: bar.advance(task, n), waiting=_waiting(bar.console)
        )
    click.echo(f"deleted {counts['events']} events, {counts['visits']} visits, {counts['sessions']} sessions")


@cli.command()
@click.option("--distinct-id", required=True, help="The id the site passed to umami.identify() / payload.id.")
@click.option("--site", "website_id", help="Only on this website.")
@_db_option
def forget(distinct_id: str, website_id: str | None, db: str) -> None:
    """Delete a person's sessions, visits, events and data (for privacy requests).

    Example: footfall forget --distinct-id user-42
    """
    console = _console()
    with console.status("Deleting…"):
        counts = _checked(forget_person, db, distinct_id, website_id, waiting=_waiting(console))
    click.echo(", ".join(f"deleted {n} {what}" for what, n in counts.items()))


def _unix(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.replace(tzinfo=value.tzinfo or dt.timezone.utc).timestamp())


@cli.command()
@click.option("--site", "website_id", help="Only this website's events.")
@click.option("--since", type=click.DateTime(), help="From this UTC date or time (e.g. 2026-01-01), inclusive.")
@click.option("--until", type=click.DateTime(), help="Before this UTC date or time, exclusive.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "umami-csv"]),
    default="csv",
    show_default=True,
    help="umami-csv writes Umami's four tables as CSV files into the -o folder.",
)
@click.option("-o", "--output", default="-", help="File (default stdout); a folder for umami-csv.")
@_db_option
def export(
    website_id: str | None, since: dt.datetime | None, until: dt.datetime | None, fmt: str, output: str, db: str
) -> None:
    """Write events with their session attributes as CSV or JSON lines, streamed in constant memory; or everything as
    Umami's tables, to load into Umami's PostgreSQL.

    Example: footfall export --since 2026-01-01 --format jsonl -o events.jsonl
    """
    _require_database(db)
    if fmt == "umami-csv":
        if output == "-" or since or until:
            raise click.ClickException("umami-csv needs -o FOLDER and exports whole tables (no --since/--until)")
        counts = _checked(export_umami, db, Path(output), website_id)
        click.echo(", ".join(f"{n} {table}" for table, n in counts.items()) + f" written to {output}", err=True)
        click.echo(f"load them with: \\copy TABLE FROM '{output}/TABLE.csv' WITH CSV HEADER (session first)", err=True)
        return
    with click.open_file(output, "w", encoding="utf-8") as out:
        count = _checked(export_events, db, out, fmt, website_id, _unix(since), _unix(until))
    click.echo(f"exported {count} events", err=True)


@cli.group("import")
def import_() -> None:
    """Load history from another analytics tool."""


@import_.command("umami")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_db_option
def import_umami_command(files: tuple[Path, ...], db: str) -> None:
    """Load Umami's tables from CSV files written by psql with a header row (any order; websites and sessions are loaded
    first), all or nothing; importing the same files again adds nothing.

    Example: footfall import umami website.csv session.csv website_event.csv event_data.csv session_data.csv
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    try:
        prepared = prepare_database(db)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    columns, console = (SpinnerColumn(), TextColumn("{task.description} {task.completed} rows")), _console()
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("Importing", total=None)

        def progress(rows: int, name: str) -> None:
            bar.update(task, advance=rows, description=f"Importing {name}:")

        try:
            counts = _checked(import_umami, db, files, progress=progress, empty_site=prepared.default_website_id)
        except click.ClickException:
            if prepared.default_website_id:  # a failed import into a new database leaves no empty 'default' site
                _checked(drop_empty_site, db, prepared.default_website_id)
            raise
    click.echo(", ".join(f"{n} {what}" for what, n in sorted(counts.items())))


@cli.command()
@click.option("--site", "website_id", help="Only this website (default: all).")
@click.option("--period", default="7d", show_default=True, help="How far back, e.g. 24h, 7d, 4w.")
@_db_option
def stats(website_id: str | None, period: str, db: str) -> None:
    """Print the headline numbers and top pages of a period.

    Example: footfall stats --period 30d
    """
    _require_database(db)
    numbers = _checked(site_stats, db, website_id, _checked(parse_age, period))
    click.echo(f"last {period}: {numbers['visitors']} visitors, {numbers['visits']} visits, {numbers['pageviews']} pageviews")
    click.echo(
        f"views per visit {numbers['views_per_visit']}, bounce rate {numbers['bounce_rate']}%, "
        f"average visit {numbers['avg_visit_s']} s"
    )
    for page in numbers["top_pages"]:
        click.echo(f"{page['pageviews']:>8}  {page['url_path'] or '/'}")


@cli.command("install-service")
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/etc/systemd/system",
    show_default=True,
    envvar="FOOTFALL_UNIT_DIR",
    help="Where to write the units [env FOOTFALL_UNIT_DIR].",
)
def install_service(unit_dir: Path) -> None:
    """Write footfall's systemd units, pointing at this footfall, and say how to start them (run it with sudo).

    Example: sudo footfall install-service
    """
    executable = shutil.which("footfall") or str(Path(sys.executable).with_name("footfall"))
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name in ("footfall.service", "footfall-backup.service", "footfall-backup.timer"):
        text = asset_path(name).read_text(encoding="utf-8").replace("/usr/local/bin/footfall", executable)
        (unit_dir / name).write_text(text, encoding="utf-8")
        click.echo(f"wrote {unit_dir / name}")
    click.echo("now: systemctl daemon-reload && systemctl enable --now footfall.service footfall-backup.timer")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``footfall``); returns the exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="footfall", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0
