"""The ``footfall`` command (click): serve, site, password, api-key, backup, check, prune, forget, export, stats, import,
report.

Owns: options and their help, one-line error messages, exit codes. Each command calls a plain function of the module
that owns the work. Imports collector and any footfall module; nothing imports it (the console script points here).

Errors follow one convention: a single line ``footfall: error: …`` on stderr naming the path or value and what to do;
exit status 2 for a wrong command line (click's usage errors and bad values, bad settings), 1 for a failure (no database,
no permission, a busy port, a damaged file). A traceback is shown only with ``footfall --debug …``. Commands that read or
change a database never create one: only ``serve``, ``site add`` and ``import`` do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import logging
import os
import shutil
import signal
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from collector import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SETTINGS,
    ConfigError,
    Setting,
    __version__,
    apply_migrations,
    asset_path,
    connect,
    env_name,
    load_config,
    prepare_database,
    transaction,
)
from footfall.app import create_app, sd_notify
from footfall.auth import (
    MIN_PASSWORD_CHARS,
    create_api_key,
    hash_password,
    list_api_keys,
    new_share_token,
    revoke_api_key,
    revoke_sessions,
)
from footfall.geo import MaxMindGeo
from footfall.ops import (
    backup_database,
    check_database,
    expire_backups,
    export_events,
    forget_person,
    prune_events,
    site_stats,
)
from footfall.params import (
    Age,
    CidrList,
    DatabasePath,
    Domain,
    Duration,
    Failure,
    FootfallGroup,
    Rate,
    Retention,
    SiteName,
    Switch,
    TimeZone,
    WebsiteId,
    WholeNumber,
    database_uri,
    existing_database,
    new_file,
    new_folder,
)
from footfall.rollups import set_setting
from footfall.server import NotifyingServer, uvicorn_config
from footfall.umami import export_umami, import_umami


###############################################################################################################################
# Errors: one line, the right exit status (FootfallGroup in footfall.params prints them)
###############################################################################################################################
def _checked(fn: Callable[..., Any], db: str, *args: Any, **kwargs: Any) -> Any:
    """Run an operation on the database ``db``; its ConfigError or database error becomes a one-line failure."""
    try:
        return fn(db, *args, **kwargs)
    except ConfigError as exc:
        raise Failure(str(exc)) from None
    except sqlite3.Error as exc:
        raise Failure(f"database error in {db}: {exc}") from None


###############################################################################################################################
# Databases the commands open
###############################################################################################################################
def _open_for_cli(db: str) -> sqlite3.Connection:
    """A connection to ``db``, created with its schema if missing (for `site add` and `import`): no 'default' site."""
    new_file(db, f"--db {db}", "database file")
    try:
        prepare_database(db, default_site=False)
        return connect(db)
    except ConfigError as exc:
        raise Failure(str(exc)) from None


@contextlib.contextmanager
def _existing(db: str, write: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection to the footfall database at ``db``, which must exist (nothing is created), brought up to date."""
    existing_database(db, write)
    try:
        conn = connect(db) if write else sqlite3.connect(database_uri(db, write=False), uri=True)
    except sqlite3.Error as exc:
        raise Failure(f"cannot open the database {db}: {exc}") from None
    try:
        if write:
            apply_migrations(conn, MIGRATIONS)
        yield conn
    except ConfigError as exc:
        raise Failure(str(exc)) from None
    except sqlite3.Error as exc:
        raise Failure(f"database error in {db}: {exc}") from None
    finally:
        conn.close()


_db_option = click.option(
    "--db",
    type=DatabasePath(),
    default=lambda: os.environ.get("FOOTFALL_DB", "footfall.db"),
    show_default="footfall.db",
    help="Database file [env FOOTFALL_DB].",
)


###############################################################################################################################
# footfall and footfall serve
###############################################################################################################################
#: Click types of the settings whose text has a syntax of its own; the others follow the type of their default.
_SETTING_TYPES: dict[str, click.ParamType] = {
    "db": DatabasePath(),
    "trusted_proxies": CidrList(),
    "ignore_ip": CidrList(),
    "rate_limit": Rate(),
    "timezone": TimeZone(),
    "geoip_db": click.Path(exists=True, dir_okay=False),
    "wal_autocheckpoint": WholeNumber(min=0),  # 0: leave checkpoints to Litestream
}


#: Metavars of free-text settings, so --help says what goes there.
_SETTING_METAVARS = {
    "host": "ADDRESS",
    "client_ip_header": "HEADER",
    "tracker_path": "URL-PATH",
    "collect_path": "URL-PATH",
    "password_hash": "HASH",
    "api_username": "USERNAME",
}


def _setting_type(setting: Setting) -> click.ParamType:
    """The click type of a setting: a choice, a syntax of its own, a whole number (the same bounds as load_config)."""
    if setting.choices:
        return click.Choice(setting.choices)
    if setting.name in _SETTING_TYPES:
        return _SETTING_TYPES[setting.name]
    if isinstance(setting.default, int):
        return WholeNumber(0, 65535) if setting.name == "port" else WholeNumber(min=1)
    return click.STRING


class _SwitchOption(click.Option):
    """An on/off flag whose environment variable is read by Switch, so a wrong word gets footfall's sentence."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.type = Switch()


def _setting_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add one ``--name`` option per SETTINGS entry, typed, with its FOOTFALL_* variable (None when neither is given)."""
    for setting in reversed(SETTINGS):
        flag = "--" + setting.name.replace("_", "-")
        help_text = f"{setting.help} [env {env_name(setting)}; default {setting.default!r}]"
        if isinstance(setting.default, bool):
            option = click.option(
                f"{flag}/--no-{flag[2:]}",
                setting.name,
                cls=_SwitchOption,
                default=None,
                envvar=env_name(setting),
                help=help_text,
            )
        else:
            option = click.option(
                flag,
                setting.name,
                default=None,
                type=_setting_type(setting),
                metavar=_SETTING_METAVARS.get(setting.name),
                envvar=env_name(setting),
                help=help_text,
            )
        fn = option(fn)
    return fn


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(asctime)s level=%(levelname)s %(message)s")


@click.group("footfall", cls=FootfallGroup, invoke_without_command=True)
@click.version_option(__version__, prog_name="footfall")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error (to report it).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """footfall: Umami-compatible web analytics in one SQLite file.

    Run without a command to serve with the defaults (same as `footfall serve`).
    """
    ctx.command.debug = debug  # type: ignore[attr-defined]  # FootfallGroup shows tracebacks then
    if ctx.invoked_subcommand is None:  # read options from the environment exactly as `footfall serve` does
        serve.main(args=[], prog_name=f"{ctx.command_path} serve", standalone_mode=False)


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, so a busy port is reported before anything is announced or created."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror:
        raise Failure(f"cannot listen on {where}: no such address on this machine — use --host 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Failure(f"address already in use: {where} — is footfall already running? use --port") from None
        if exc.errno == errno.EACCES:
            raise Failure(f"no permission to listen on {where} (ports below 1024 need root) — use --port 8000") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise Failure(f"cannot listen on {where}: not an address of this machine — use --host 127.0.0.1") from None
        raise Failure(f"cannot listen on {where}: {exc.strerror}") from None
    sock.listen(2048)  # uvicorn's backlog: from here connections wait for the server instead of being refused
    return sock


@cli.command()
@_setting_options
def serve(**options: Any) -> None:
    """Collect events over HTTP until stopped (SIGTERM or Ctrl-C drain the queue first).

    Example: footfall serve --db /var/lib/footfall/footfall.db --port 8000
    """
    try:
        config = load_config(options, os.environ)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    new_file(config.db, f"--db {config.db}", "database file")
    sock = _listen(config.host, config.port)
    try:
        prepared = prepare_database(config.db, config.salt_rotation)
        if config.geoip_db:
            MaxMindGeo(config.geoip_db).close()  # fail now, with a clear message, rather than inside the server
    except ConfigError as exc:
        sock.close()
        raise Failure(str(exc)) from None
    _configure_logging(config.log_level)
    host = f"[{config.host}]" if ":" in config.host else config.host
    base = f"http://{host}:{sock.getsockname()[1]}"
    click.echo(f"footfall {__version__} listening on {base}, database {os.path.abspath(config.db)}")
    if prepared.default_website_id:
        click.echo(f"Created website 'default' with id {prepared.default_website_id}. Paste this into your pages:")
        click.echo(f'  <script defer src="{base}/script.js" data-website-id="{prepared.default_website_id}"></script>')

    server = NotifyingServer(uvicorn_config(create_app(config), config), sd_notify, base)  # limits: footfall.server
    server.run_until_stopped(sock)
    if not server.started:
        raise Failure(f"could not serve on {base} — the lines above say why")


###############################################################################################################################
# footfall site …
###############################################################################################################################
@cli.group()
def site() -> None:
    """Add, list and remove websites."""


def _no_such_site(website_id: str) -> Failure:
    return Failure(f"no website with id {website_id} — `footfall site list` shows the ids")


@site.command("add")
@click.argument("name", type=SiteName())
@click.option("--domain", type=Domain(), help="The site's main domain, e.g. example.com (an IDN or HOST:PORT is fine).")
@click.option(
    "--id", "website_id", type=WebsiteId(), help="Keep this website UUID (e.g. your Umami website id, so snippets stay)."
)
@_db_option
def site_add(name: str, domain: str | None, website_id: str | None, db: str) -> None:
    """Add a website and print its UUID (only the UUID, so scripts can capture it); names are unique, in any case.

    Example: footfall site add blog --domain blog.example.com
    """
    website_id = website_id or str(uuid.uuid4())
    conn = _open_for_cli(db)
    try:
        for other_id, other_name in conn.execute("SELECT website_id, name FROM website WHERE deleted_at IS NULL"):
            if other_name.casefold() == name.casefold():
                raise Failure(f"a website named {other_name!r} already exists ({other_id}) — choose another name")
        conn.execute(
            "INSERT INTO website (website_id, name, domain, created_at) VALUES (?, ?, ?, ?)",
            (website_id, name, domain, int(time.time())),
        )
    except sqlite3.IntegrityError:
        raise Failure(f"a website with id {website_id} already exists — `footfall site list` shows it") from None
    finally:
        conn.close()
    click.echo(website_id)


@site.command("list")
@_db_option
def site_list(db: str) -> None:
    """List websites, tab-separated: id, name, domain, and whether removed.

    Example: footfall site list --db footfall.db
    """
    with _existing(db, write=False) as conn:
        rows = conn.execute(
            "SELECT website_id, name, ifnull(domain, ''), deleted_at FROM website ORDER BY website_key"
        ).fetchall()
    for website_id, name, domain, deleted_at in rows:
        click.echo("\t".join((website_id, name, domain, "removed" if deleted_at else "active")))
    if not rows:
        click.echo(f"no websites in {db} yet — add one with `footfall site add NAME`", err=True)


@site.command("remove")
@click.argument("website_id", type=WebsiteId())
@_db_option
def site_remove(website_id: str, db: str) -> None:
    """Remove a website: its data stays, further events for it get 'Website not found.'.

    Example: footfall site remove 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c
    """
    with _existing(db) as conn:
        found = conn.execute("SELECT deleted_at FROM website WHERE website_id = ?", (website_id,)).fetchone()
        if found is None:
            raise _no_such_site(website_id)
        if found[0] is not None:
            raise Failure(f"website {website_id} is already removed")
        conn.execute("UPDATE website SET deleted_at = ? WHERE website_id = ?", (int(time.time()), website_id))
    click.echo(f"removed {website_id}")


@site.command("retention")
@click.argument("website_id", type=WebsiteId())
@click.argument("days", type=Retention())
@_db_option
def site_retention(website_id: str, days: int | None, db: str) -> None:
    """Keep a site's events for DAYS days (deleted daily by the running server), or 'off' to keep everything.

    Example: footfall site retention 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c 400
    """
    with _existing(db) as conn:
        changed = conn.execute("UPDATE website SET retention_days = ? WHERE website_id = ?", (days, website_id)).rowcount
    if not changed:
        raise _no_such_site(website_id)
    click.echo(f"{website_id}: events kept {'forever' if days is None else f'{days} days'}")


@site.command("share")
@click.argument("website_id", type=WebsiteId())
@click.option("--revoke", is_flag=True, help="Delete the site's share link; its URL stops working at once.")
@click.option(
    "--base-url",
    default=lambda: os.environ.get("FOOTFALL_PUBLIC_URL", "http://127.0.0.1:8000"),
    show_default="http://127.0.0.1:8000",
    metavar="URL",
    help="Where footfall is reached [env FOOTFALL_PUBLIC_URL].",
)
@_db_option
def site_share(website_id: str, revoke: bool, base_url: str, db: str) -> None:
    """Print a public, read-only link to a site's summary page (made once, then the same link), or --revoke it.

    Anyone with the link sees that site's summary, nothing else. Example:
    footfall site share 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c --base-url https://stats.example.org
    """
    with _existing(db) as conn:
        row = conn.execute("SELECT website_key, name, deleted_at FROM website WHERE website_id = ?", (website_id,)).fetchone()
        if row is None:
            raise _no_such_site(website_id)
        key, name, deleted_at = row
        if revoke:
            gone = conn.execute("DELETE FROM share_link WHERE website_key = ?", (key,)).rowcount
            click.echo(f"{website_id}: share link revoked" if gone else f"{website_id}: had no share link")
            return
        if deleted_at is not None:
            raise Failure(f"website {website_id} ({name}) is removed — only active websites can be shared")
        conn.execute(
            "INSERT OR IGNORE INTO share_link (token, website_key, created_at) VALUES (?, ?, ?)",
            (new_share_token(), key, int(time.time())),
        )
        token = conn.execute("SELECT token FROM share_link WHERE website_key = ?", (key,)).fetchone()[0]
    click.echo(f"{base_url.rstrip('/')}/share/{token}")


###############################################################################################################################
# footfall password
###############################################################################################################################
@cli.command()
@click.option("--print-hash", is_flag=True, help="Print the hash (for FOOTFALL_PASSWORD_HASH) instead of storing it.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@_db_option
def password(print_hash: bool, from_stdin: bool, db: str) -> None:
    """Set the summary page's password (stored as a salted scrypt hash); ends every login, page and API tokens alike.

    Until a password is set, the summary page answers only browsers on this machine. Example: footfall password
    """
    if not print_hash:
        existing_database(db, write=True)  # before asking for anything
    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise click.UsageError(
            "no terminal to type the password in — give it on standard input: footfall password --stdin <<< 'PASSWORD'"
        )
    else:
        secret = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    if len(secret) < MIN_PASSWORD_CHARS:
        raise Failure(f"a password needs at least {MIN_PASSWORD_CHARS} characters; this one has {len(secret)}")
    hashed = hash_password(secret)
    if print_hash:
        click.echo(hashed)
        return
    with _existing(db) as conn:
        with transaction(conn):
            set_setting(conn, "password_hash", hashed)
            ended = revoke_sessions(conn)
    click.echo(f"Password set; {ended} login(s) ended. Log in at /login (a running footfall picks it up within seconds).")


@cli.group("api-key")
def api_key() -> None:
    """API keys for scripts reading Umami's API (`Authorization: Bearer KEY` or `x-umami-api-key: KEY`)."""


@api_key.command("create")
@click.argument("name")
@_db_option
def api_key_create(name: str, db: str) -> None:
    """Make an API key called NAME and print it: only this once (footfall keeps a hash of it).

    Example: footfall api-key create dashboard
    """
    with _existing(db) as conn:
        try:
            key = create_api_key(conn, name, time.time())
        except ValueError as exc:
            raise Failure(str(exc)) from None
    click.echo(key)


@api_key.command("list")
@_db_option
def api_key_list(db: str) -> None:
    """List API keys: name, when made and when last used (UTC); never the keys themselves.

    Example: footfall api-key list
    """
    with _existing(db, write=False) as conn:
        keys = list_api_keys(conn)
    stamp = lambda t: "never" if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))  # noqa: E731
    for key in keys:
        click.echo(f"{key.name}\tcreated {stamp(key.created_at)}\tlast used {stamp(key.last_used_at)}")


@api_key.command("revoke")
@click.argument("name")
@_db_option
def api_key_revoke(name: str, db: str) -> None:
    """Delete the API key called NAME; requests with it are refused from then on.

    Example: footfall api-key revoke dashboard
    """
    with _existing(db) as conn:
        gone = revoke_api_key(conn, name)
    if not gone:
        raise Failure(f"no API key named {name!r}; `footfall api-key list` shows them")
    click.echo(f"revoked {name}")


###############################################################################################################################
# Operating commands: backup, check, prune, forget, export, import, stats, install-service
###############################################################################################################################
def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _waiting(console: Any) -> Callable[[int, int], None]:
    """Tell whoever runs prune or forget that the database is locked and the command tries again."""
    return lambda done, of: console.print(f"The database is locked by another writer; trying again ({done + 1} of {of})…")


@cli.command()
@click.argument("dest", type=click.Path())
@click.option("--keep-days", type=WholeNumber(min=1), help="Then delete footfall-*.db backups in DEST older than this.")
@_db_option
def backup(dest: str, keep_days: int | None, db: str) -> None:
    """Copy the database consistently while footfall keeps running (into DEST: a new file, or a directory, created
    when DEST ends in / or --keep-days is given).

    Example: footfall backup --db /var/lib/footfall/footfall.db --keep-days 14 /var/lib/footfall/backups/
    """
    existing_database(db, write=False)
    if keep_days is not None or dest.endswith(("/", os.sep)) or Path(dest).is_dir():
        new_folder(dest, f"DEST {dest}")
        Path(dest).mkdir(parents=True, exist_ok=True)
    else:
        new_file(dest, f"DEST {dest}", "backup file")
    with _console().status(f"Backing up {db}…"):
        target = _checked(backup_database, db, dest)
    click.echo(f"{target}\t{target.stat().st_size} bytes")
    if keep_days is not None:
        for old in expire_backups(target.parent, keep_days):
            click.echo(f"deleted {old}")


@cli.command()
@_db_option
def check(db: str) -> None:
    """Check the database: integrity, schema version, row counts and salts; exit 1 if it is damaged.

    Example: footfall check --db footfall.db
    """
    existing_database(db, write=False)
    report = _checked(check_database, db)
    click.echo(f"integrity: {report['integrity']}")
    version = report["schema_version"]
    if version == SCHEMA_VERSION:
        click.echo(f"schema version: {version}, as this footfall expects")
    elif version < SCHEMA_VERSION:
        click.echo(f"schema version: {version}, older than this footfall's {SCHEMA_VERSION} — `footfall serve` upgrades it")
    else:
        click.echo(f"schema version: {version}, newer than this footfall's {SCHEMA_VERSION} — upgrade footfall")
    for table, count in report["rows"].items():
        click.echo(f"rows {table}: {count}")
    for line in report["salts"]:
        click.echo(line)
    if report["integrity"] != "ok":
        raise Failure(f"the database {db} is damaged — restore a backup (see README, Backups)")


@cli.command()
@click.option("--older-than", "older_than", type=Duration(), required=True, help="Age of events to delete: 400d, 12w, 36h.")
@click.option("--site", "website_id", type=WebsiteId(), help="Only this website's events.")
@_db_option
def prune(older_than: Age, website_id: str | None, db: str) -> None:
    """Delete events older than an age, in small transactions so a running footfall never stalls.

    Example: footfall prune --older-than 400d --site 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    existing_database(db, write=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description} {task.completed} events"), console=_console()) as bar:
        task = bar.add_task("Deleting", total=None)
        advance = lambda n: bar.advance(task, n)  # noqa: E731
        counts = _checked(prune_events, db, older_than.seconds, website_id, progress=advance, waiting=_waiting(bar.console))
    click.echo(f"deleted {counts['events']} events, {counts['visits']} visits, {counts['sessions']} sessions")


@cli.command()
@click.option("--distinct-id", required=True, metavar="ID", help="The id the site passed to umami.identify() / payload.id.")
@click.option("--site", "website_id", type=WebsiteId(), help="Only on this website.")
@_db_option
def forget(distinct_id: str, website_id: str | None, db: str) -> None:
    """Delete a person's sessions, visits, events and data (for privacy requests).

    Example: footfall forget --distinct-id user-42
    """
    existing_database(db, write=True)
    with _console().status("Deleting…") as status:
        counts = _checked(forget_person, db, distinct_id, website_id, waiting=_waiting(status.console))
    click.echo(", ".join(f"deleted {n} {what}" for what, n in counts.items()))


def _unix(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.replace(tzinfo=value.tzinfo or dt.timezone.utc).timestamp())


@cli.command()
@click.option("--site", "website_id", type=WebsiteId(), help="Only this website's events.")
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
@click.option(
    "-o", "--output", default="-", type=click.Path(allow_dash=True), help="File (default stdout); a folder for umami-csv."
)
@_db_option
def export(
    website_id: str | None, since: dt.datetime | None, until: dt.datetime | None, fmt: str, output: str, db: str
) -> None:
    """Write events with their session attributes as CSV or JSON lines, streamed in constant memory; or everything as
    Umami's tables, to load into Umami's PostgreSQL.

    Example: footfall export --since 2026-01-01 --format jsonl -o events.jsonl
    """
    if fmt == "umami-csv" and (output == "-" or since or until):
        raise click.UsageError("umami-csv needs -o FOLDER and exports whole tables (no --since/--until)")
    existing_database(db, write=False)
    if fmt == "umami-csv":
        new_folder(output, f"-o {output}")
        counts = _checked(export_umami, db, Path(output), website_id)
        click.echo(", ".join(f"{n} {table}" for table, n in counts.items()) + f" written to {output}", err=True)
        click.echo(f"load them with: \\copy TABLE FROM '{output}/TABLE.csv' WITH CSV HEADER (session first)", err=True)
        return
    if output != "-":
        new_file(output, f"-o {output}", "file")
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

    _open_for_cli(db).close()  # a new database gets no 'default' site: the import brings Umami's
    columns, console = (SpinnerColumn(), TextColumn("{task.description} {task.completed} rows")), _console()
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("Importing", total=None)
        update = lambda rows, name: bar.update(task, advance=rows, description=f"Importing {name}:")  # noqa: E731
        counts = _checked(import_umami, db, files, progress=update)
    click.echo(", ".join(f"{n} {what}" for what, n in sorted(counts.items())))


# ---- ClickHouse: `footfall ship clickhouse` and `footfall import clickhouse` (footfall.clickhouse) ----------------------


def _clickhouse_target(url: str | None, chdb: str | None, database: str) -> Any:
    from footfall.clickhouse import open_target

    if url and chdb:
        raise click.UsageError("give --url or --chdb, not both")
    try:
        import clickhouse_connect.driver  # noqa: F401 - it sets urllib3's log level on import; ours must come after
    except ImportError:
        pass  # open_target says what to install
    for noisy in ("clickhouse_connect", "urllib3"):  # their retries and warnings become footfall's one-line errors
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    return _checked(open_target, url, chdb, database, os.environ)


_clickhouse_options = [
    click.option(
        "--url",
        metavar="URL",
        help="ClickHouse's HTTP(S) interface, e.g. https://ch.example.org:8443 [env FOOTFALL_CLICKHOUSE_URL].",
    ),
    click.option(
        "--chdb", type=click.Path(file_okay=False), help="Use an in-process chDB database in this directory instead."
    ),
    click.option(
        "--database",
        metavar="NAME",
        default="umami",
        show_default=True,
        help="The ClickHouse database holding Umami's tables.",
    ),
    click.option(
        "--batch-size",
        type=WholeNumber(100, 1_000_000),
        default=10_000,
        show_default=True,
        help="Events per batch: what is held in memory and inserted at once.",
    ),
]


def _with_clickhouse_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_clickhouse_options):
        fn = option(fn)
    return fn


@cli.group()
def ship() -> None:
    """Copy events continuously to another system."""


@ship.command("clickhouse")
@_with_clickhouse_options
@click.option("--once", "mode", flag_value="once", default=True, help="Ship what is there, then exit (the default).")
@click.option("--follow", "mode", flag_value="follow", help="Keep shipping new events until stopped (SIGTERM, Ctrl-C).")
@click.option(
    "--poll", type=click.FloatRange(0.1, 3600), default=5.0, show_default=True, help="Seconds between looks, with --follow."
)
@_db_option
def ship_clickhouse(
    url: str | None, chdb: str | None, database: str, batch_size: int, mode: str, poll: float, db: str
) -> None:
    """Insert the events not yet shipped into Umami's ClickHouse tables (created if missing), in key order and batches.

    User and password come from FOOTFALL_CLICKHOUSE_USER and FOOTFALL_CLICKHOUSE_PASSWORD (or the URL); https URLs use TLS
    (FOOTFALL_CLICKHOUSE_CA_CERT for a private CA). Resumes where it stopped, without gaps or duplicates. Example:
    footfall ship clickhouse --url https://ch.example.org:8443 --follow
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from footfall.ship import backlog, follow
    from footfall.ship import ship as ship_events

    existing_database(db, write=True)
    _configure_logging("info")
    # FOOTFALL_WAL_AUTOCHECKPOINT=0 beside Litestream: ship's own writes (its position) must not checkpoint either.
    checkpoints = _checked(load_config, {}, os.environ).wal_autocheckpoint
    target = _clickhouse_target(url, chdb, database)
    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeElapsedColumn(),
    )
    if mode == "follow":
        click.echo(f"following {db} into {target.name}, every {poll:g} s", err=True)
    try:
        with Progress(*columns, console=_console(), transient=mode == "follow") as bar:
            task = bar.add_task(f"Shipping to {target.name}", total=_checked(backlog, db, target.name), rate="–")
            started = time.monotonic()

            def advance(n: int) -> None:
                bar.advance(task, n)
                done = bar.tasks[0].completed
                bar.update(task, rate=f"{done / max(time.monotonic() - started, 1e-6):,.0f}")

            if mode == "once":
                result = _checked(ship_events, db, target, batch_size, advance, lambda: stop["now"], True, checkpoints)
            else:

                def on_error(message: str, wait: float) -> None:
                    logging.getLogger("footfall").warning("event=ship-retry wait_s=%g error=%r", wait, message)

                def advance_follow(n: int) -> None:
                    bar.update(task, total=max(bar.tasks[0].total or 0, bar.tasks[0].completed + n))
                    advance(n)

                total = _checked(
                    follow,
                    db,
                    target,
                    batch_size,
                    poll,
                    advance_follow,
                    lambda: stop["now"],
                    on_error,
                    time.sleep,
                    checkpoints,
                )
                click.echo(f"stopped: shipped {total} events", err=True)
                return
    finally:
        target.close()
    for note in result.notes:
        click.echo(note, err=True)
    rate = result.events / result.seconds if result.seconds else 0.0
    click.echo(
        f"shipped {result.events} events, {result.event_data} event data rows, {result.session_data} session data rows "
        f"in {result.seconds:.1f} s ({rate:,.0f} events/s)"
    )


@import_.command("clickhouse")
@_with_clickhouse_options
@click.option("--site", "website_id", type=WebsiteId(), help="Only this website (default: all).")
@click.option("--merge", is_flag=True, help="Add to a site that already has events in the file (else refused).")
@_db_option
def import_clickhouse_command(
    url: str | None, chdb: str | None, database: str, batch_size: int, website_id: str | None, merge: bool, db: str
) -> None:
    """Load Umami's ClickHouse tables (website_event, event_data, session_data) into a footfall file; ids stay the same.

    Example: footfall import clickhouse --url http://localhost:8123 --db footfall.db
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from footfall.clickhouse_import import import_clickhouse

    new_file(db, f"--db {db}", "database file")
    target = _clickhouse_target(url, chdb, database)
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description} {task.completed} events"), console=_console()) as bar:
            task = bar.add_task("Importing", total=None)
            counts = _checked(import_clickhouse, db, target, website_id, batch_size, merge, lambda n: bar.advance(task, n))
    finally:
        target.close()
    click.echo(", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing to import")


# ---- end of ClickHouse commands -------------------------------------------------------------------------------------


@cli.command()
@click.option("--site", "website_id", type=WebsiteId(), help="Only this website (default: all).")
@click.option("--period", type=Duration(), default="7d", show_default=True, help="How far back: 24h, 7d, 4w.")
@_db_option
def stats(website_id: str | None, period: Age, db: str) -> None:
    """Print the headline numbers and top pages of a period.

    Example: footfall stats --period 30d
    """
    existing_database(db, write=True)
    numbers = _checked(site_stats, db, website_id, period.seconds)
    click.echo(
        f"last {period.text}: {numbers['visitors']} visitors, {numbers['visits']} visits, {numbers['pageviews']} pageviews"
    )
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
    new_folder(str(unit_dir), f"--unit-dir {unit_dir}")
    unit_dir.mkdir(parents=True, exist_ok=True)
    units = ("footfall.service", "footfall-backup.service", "footfall-backup.timer")
    for name in (*units, "footfall-report.service", "footfall-report.timer"):
        text = asset_path(name).read_text(encoding="utf-8").replace("/usr/local/bin/footfall", executable)
        (unit_dir / name).write_text(text, encoding="utf-8")
        click.echo(f"wrote {unit_dir / name}")
    click.echo("now: systemctl daemon-reload && systemctl enable --now footfall.service footfall-backup.timer")
    click.echo("weekly e-mail: set FOOTFALL_REPORT_TO and FOOTFALL_SMTP_* in /etc/footfall/footfall.env, then "
               "systemctl enable --now footfall-report.timer")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``footfall``); returns the exit code."""
    return cli.main(args=list(argv) if argv is not None else None, prog_name="footfall", standalone_mode=False)


@cli.command()
@click.option("--site", "website_id", type=WebsiteId(), help="Only this website (default: every website, one section each).")
@click.option("--email", "emails", multiple=True, envvar="FOOTFALL_REPORT_TO", metavar="ADDRESS",
              help="Send the report to this address (repeat for more) [env FOOTFALL_REPORT_TO, space-separated].")  # fmt: skip
@click.option("--smtp-host", envvar="FOOTFALL_SMTP_HOST", metavar="HOST",
              help="SMTP server [env FOOTFALL_SMTP_HOST]; without it the report is printed.")  # fmt: skip
@click.option("--smtp-port", envvar="FOOTFALL_SMTP_PORT", type=click.IntRange(1, 65535), default=587, show_default=True,
              metavar="PORT", help="SMTP port [env FOOTFALL_SMTP_PORT].")  # fmt: skip
@click.option("--smtp-user", envvar="FOOTFALL_SMTP_USER", metavar="USER", help="SMTP login [env FOOTFALL_SMTP_USER]; the "
              "password is read from FOOTFALL_SMTP_PASSWORD.")  # fmt: skip
@click.option("--starttls/--no-starttls", default=True, show_default=True, help="Encrypt with STARTTLS before logging in.")
@click.option("--from", "sender", envvar="FOOTFALL_SMTP_FROM", default="footfall@localhost", show_default=True,
              metavar="ADDRESS", help="Sender address [env FOOTFALL_SMTP_FROM].")  # fmt: skip
@_db_option
def report(
    website_id: str | None,
    emails: tuple[str, ...],
    smtp_host: str | None,
    smtp_port: int,
    smtp_user: str | None,
    starttls: bool,
    sender: str,
    db: str,
) -> None:
    """Last week's summary (Monday to Sunday): e-mail it, or print it without SMTP settings.

    The numbers are the summary page's for that week, each compared with the week before.

    Example: FOOTFALL_SMTP_PASSWORD=… footfall report --email me@example.com --smtp-host smtp.example.com --smtp-user me
    """
    from footfall.report import SmtpSettings, build_report, send_report

    existing_database(db, write=True)
    built = _checked(build_report, db, website_id, timezone=os.environ.get("FOOTFALL_TIMEZONE"))
    if not smtp_host or not emails:
        if emails:
            click.echo("no --smtp-host given: printing the report instead of sending it", err=True)
        click.echo(f"Subject: {built.subject}\n")
        click.echo(built.text, nl=False)
        return
    if smtp_user and not os.environ.get("FOOTFALL_SMTP_PASSWORD"):
        raise Failure("--smtp-user needs the password in FOOTFALL_SMTP_PASSWORD")
    settings = SmtpSettings(smtp_host, smtp_port, smtp_user, os.environ.get("FOOTFALL_SMTP_PASSWORD"), starttls, sender)
    try:
        send_report(built, list(emails), settings)
    except ConfigError as exc:
        raise Failure(str(exc)) from None
    click.echo(f"sent {built.subject!r} to {', '.join(emails)}")
