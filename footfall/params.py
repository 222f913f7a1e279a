"""What the ``footfall`` command accepts and how it says no: click parameter types, path checks, one-line errors.

Owns: the one error line and exit status of every mistake (``FootfallGroup``); how each kind of command-line value is
read and what a wrong one is told (durations, CIDR lists, host names, website ids, names and retentions, rates, time
zones, database paths); and the one sentence that explains a path footfall cannot use (a directory, a missing
directory, no database there, no permission). A wrong value is a usage error (exit 2, from click); a path or database
that cannot be used is a ``Failure`` (exit 1). Imports collector and footfall.ops; only footfall.cli imports it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import click
from click.core import ParameterSource

from collector import UUID_RE, ConfigError, load_zone, parse_networks, parse_rate
from footfall.ops import parse_age


class Failure(click.ClickException):
    """A command could not do its work (exit 1); the message is one sentence naming the path or value and what to do."""


###############################################################################################################################
# Errors: one line, the right exit status
###############################################################################################################################
def error_line(exc: click.ClickException) -> str:
    """The one line a ClickException prints: ``footfall: error: …``, with where to read more for a usage error."""
    if isinstance(exc, click.BadParameter) and exc.ctx is not None and exc.param is not None and exc.param.envvar:
        if exc.ctx.get_parameter_source(exc.param.name or "") is ParameterSource.ENVIRONMENT:
            exc.param_hint = f"{exc.param.envvar} (the environment's {exc.param.opts[0]})"
    message = " ".join(exc.format_message().split()).replace(". Did you mean", " — did you mean")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    if isinstance(exc, click.UsageError) and exc.ctx is not None and " — " not in message:
        message = f"{message.rstrip('.')} — see `{exc.ctx.command_path} --help`"
    return f"footfall: error: {message}"


def _unexpected_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"footfall: error: {exc.filename}: {(exc.strerror or str(exc)).lower()} — `footfall --debug …` shows where"
    return (
        f"footfall: error: unexpected {type(exc).__name__}: {exc} — `footfall --debug …` shows the traceback; please report it"
    )


class FootfallGroup(click.Group):
    """click's group, reporting every error as one line ``footfall: error: …`` instead of click's usage text: exit 2
    for a usage error, 1 for a failure, and the traceback of an unexpected error only after ``footfall --debug``."""

    #: Set by ``footfall --debug`` for this run.
    debug = False

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        self.debug = False
        try:
            result = super().main(args, prog_name or "footfall", complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except click.ClickException as exc:
            click.echo(error_line(exc), err=True)
            code = exc.exit_code
        except click.exceptions.Abort:
            click.echo("footfall: error: stopped before finishing — nothing more was done", err=True)
            code = 1
        except Exception as exc:
            if self.debug:
                traceback.print_exc()
            click.echo(_unexpected_line(exc), err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


###############################################################################################################################
# Value types
###############################################################################################################################
class _Type(click.ParamType):
    """A click type shown in --help by its metavar (e.g. DURATION), never as TEXT."""

    metavar = "VALUE"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.metavar


class WholeNumber(click.IntRange):
    """A whole number within bounds, shown as INTEGER with its range (click's IntRange, named as people say it)."""

    name = "integer"


class Switch(click.types.BoolParamType):
    """On or off: true/false, yes/no, on/off, 1/0 (the words load_config takes from the environment, and click's)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bool:
        try:
            return bool(super().convert(value, param, ctx))
        except click.BadParameter:
            self.fail(f"{value!r} is neither true nor false (1/0, yes/no, on/off)", param, ctx)


class Age(NamedTuple):
    """A duration as given (``text``, e.g. '400d') and in seconds."""

    text: str
    seconds: int


class Duration(_Type):
    """Whole hours, days or weeks: 36h, 400d, 12w."""

    name = "duration"
    metavar = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Age:
        if isinstance(value, Age):
            return value
        try:
            return Age(str(value).strip(), parse_age(str(value)))
        except ConfigError:
            self.fail(f"{value!r} is not a duration like 36h, 400d or 12w (hours, days or weeks)", param, ctx)


class CidrList(_Type):
    """A comma list of IP addresses and CIDR ranges, IPv4 or IPv6 (kept as the text given, once checked)."""

    name = "CIDR list"
    metavar = "CIDR[,CIDR…]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_networks(str(value), "list")
        except ConfigError as exc:
            bad = str(exc).split(": ", 1)[1].split(" is not", 1)[0]
            self.fail(f"{bad} is not an IP address or CIDR range (e.g. 10.0.0.5/32,2001:db8::/32)", param, ctx)
        return str(value)


class Rate(_Type):
    """Requests per second or per minute: 4/s, 120/m."""

    name = "rate"
    metavar = "N/s|N/m"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_rate(str(value))
        except ConfigError:
            self.fail(f"{value!r} is not a rate like 4/s or 120/m", param, ctx)
        return str(value)


class TimeZone(_Type):
    """An IANA time zone name: UTC, Europe/Berlin."""

    name = "time zone"
    metavar = "ZONE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            load_zone(str(value))
        except ConfigError:
            self.fail(f"{value!r} is not an IANA time zone name like Europe/Berlin or UTC", param, ctx)
        return str(value)


#: Most characters in a host name, and in one of its labels (RFC 1035).
MAX_HOST_CHARS, MAX_LABEL_CHARS = 253, 63


def _ascii_host(host: str) -> str | None:
    """``host`` in ASCII (an IDN through the idna codec), if it is a host name; None if it is not."""
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = ascii_host.split(".")
    if not ascii_host or len(ascii_host) > MAX_HOST_CHARS:
        return None
    for label in labels:
        if not 1 <= len(label) <= MAX_LABEL_CHARS or label[0] == "-" or label[-1] == "-":
            return None
        if not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            return None
    return ascii_host


class Domain(_Type):
    """A host name with an optional port: blog.example.com, localhost:8080, bücher.example (IDN); kept lower-case."""

    name = "domain"
    metavar = "HOST[:PORT]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower().rstrip(".")
        host, colon, port = text.rpartition(":") if ":" in text else (text, "", "")
        if "://" in text or "/" in text:
            self.fail(f"{value!r} is a URL — give only its host name, e.g. blog.example.com", param, ctx)
        if colon and not (port.isdigit() and 1 <= int(port) <= 65535):
            self.fail(f"{value!r} has no valid port after ':' (1 to 65535)", param, ctx)
        if _ascii_host(host) is None:
            self.fail(
                f"{value!r} is not a host name like blog.example.com (letters, digits and hyphens between dots, "
                "optionally :PORT)",
                param,
                ctx,
            )
        return text


class WebsiteId(_Type):
    """A website UUID, as `footfall site list` prints them (kept lower-case)."""

    name = "website id"
    metavar = "WEBSITE-ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not UUID_RE.fullmatch(str(value)):
            self.fail(
                f"{value!r} is not a website id (a UUID like 67fdaff4-97d0-4e97-b367-29bd0e201c2d; "
                "`footfall site list` shows them)",
                param,
                ctx,
            )
        return str(value).lower()


#: Longest website name.
MAX_SITE_NAME_CHARS = 100


class SiteName(_Type):
    """A website's name: 1 to 100 printable characters (no tabs or newlines: `site list` is tab-separated)."""

    name = "site name"
    metavar = "NAME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not 1 <= len(text) <= MAX_SITE_NAME_CHARS or not text.isprintable():
            self.fail(f"{value!r} is not a site name: 1 to {MAX_SITE_NAME_CHARS} printable characters", param, ctx)
        return text


class Retention(_Type):
    """A number of days to keep events, or 'off' (None: keep everything)."""

    name = "retention"
    metavar = "DAYS|off"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        text = str(value).strip().lower()
        if text == "off":
            return None
        if text.isdigit() and int(text) > 0:
            return int(text)
        self.fail(f"{value!r} is not a number of days (1 or more) or 'off'", param, ctx)


class DatabasePath(_Type):
    """A database file's path: anything but a directory (whether it must exist is up to the command)."""

    name = "database path"
    metavar = "FILE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = os.fspath(value)
        if not text:
            self.fail("an empty path is no database file — pass e.g. --db footfall.db", param, ctx)
        if os.path.isdir(text):
            self.fail(
                f"{text} is a directory — pass the database file in it, e.g. --db {Path(text) / 'footfall.db'}", param, ctx
            )
        return text


###############################################################################################################################
# Paths: one sentence for each reason a path cannot be used
###############################################################################################################################
def _file_in_the_way(path: Path) -> Path | None:
    """The first ancestor of ``path`` that is a file where a directory should be, if any."""
    for ancestor in reversed(path.parents):
        if ancestor.is_file():
            return ancestor
    return None


def _may_write(folder: Path) -> bool:
    """Whether this user (its effective ids) may create files in ``folder``."""
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def _reach_problem(path: Path, label: str, making: bool) -> str | None:
    """Why the directory that should hold ``path`` (given as ``label``, e.g. '--db x.db') is not there or not reachable."""
    folder = path.parent
    try:
        folder_stat = folder.stat()
    except FileNotFoundError:
        if making:
            return f"no directory {folder} for {label} — create it first (mkdir -p {folder}) or pass another path"
        return f"no directory {folder}, so no database at {path} — pass the database file with --db"
    except NotADirectoryError:
        blocker = _file_in_the_way(path)
        return f"{blocker} is a file, not a directory, so {label} cannot be there"
    except PermissionError:
        return f"no permission to look into {folder} for {label} — run footfall as a user who may (ls -ld {folder})"
    if not stat.S_ISDIR(folder_stat.st_mode):
        return f"{folder} is a file, not a directory, so {label} cannot be there"
    if making and not _may_write(folder):
        return f"no permission to create files in {folder} for {label} — run footfall as a user who may (ls -ld {folder})"
    return None


def _open_problem(path: Path, label: str, write: bool) -> str | None:
    """Why the existing file ``path`` cannot be opened for reading (and writing), or None."""
    try:
        with open(path, "r+b" if write else "rb"):
            pass
    except IsADirectoryError:
        return f"{label} is a directory — pass the file in it, e.g. {label}/footfall.db"
    except PermissionError:
        return f"no permission to {'change' if write else 'read'} {path} — run footfall as the user who owns it (ls -l {path})"
    except OSError as exc:
        return f"cannot open {path}: {os.strerror(exc.errno or errno.EIO).lower()}"
    return None


def _lstat(path: Path) -> os.stat_result | None:
    """``path``'s stat, None when it does not exist; PermissionError and NotADirectoryError propagate."""
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def database_uri(db: str, write: bool) -> str:
    """An SQLite URI that opens ``db`` without creating it: read/write when allowed (a read-only connection would leave
    the -wal and -shm files behind), else read-only."""
    mode = "rw" if write or os.access(db, os.W_OK, effective_ids=os.access in os.supports_effective_ids) else "ro"
    return f"{Path(db).absolute().as_uri()}?mode={mode}"


def existing_database(db: str, write: bool) -> None:
    """Refuse ``db`` unless it is a footfall database this user may read (and, with ``write``, change): one sentence why.

    Nothing is created: the file is opened read-only or read/write without create (SQLite's ``mode=ro`` / ``mode=rw``).
    """
    path = Path(db)
    problem = _reach_problem(path, f"--db {db}", making=False)
    if problem is None:
        try:
            found = _lstat(path)
        except PermissionError:
            found, problem = None, f"no permission to look at {db} — run footfall as the user who owns it (ls -l {db})"
        if problem is None and found is None:
            problem = f"no database at {db} — start `footfall serve --db {db}` or pass --db"
        elif problem is None and found is not None:
            problem = _open_problem(path, f"--db {db}", write) or _database_problem(path, db, found, write)
    if problem is not None:
        raise Failure(problem)


def _database_problem(path: Path, db: str, found: os.stat_result, write: bool) -> str | None:
    if found.st_size == 0:
        return f"{db} is an empty file, not a footfall database — start `footfall serve --db {db}` to make one there"
    try:
        with contextlib.closing(sqlite3.connect(database_uri(db, write), uri=True)) as conn:
            tables = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'website'").fetchone()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            return f"{db} is not a SQLite database — pass footfall's database file with --db"
        return f"cannot open the database {db}: {exc}"
    if tables is None:
        return f"{db} is a SQLite database but not footfall's (it has no website table) — pass footfall's with --db"
    return None


def new_file(target: str, label: str, what: str = "file") -> None:
    """Refuse a path footfall is to create or replace (a database, an export, a backup): one sentence why.

    ``label`` names it as the user gave it, e.g. '--db x.db' or '-o x.csv'; ``what`` says what is wanted there.
    """
    path = Path(target)
    problem = _reach_problem(path, label, making=True)
    if problem is None:
        try:
            found = _lstat(path)
        except PermissionError:
            found, problem = None, f"no permission to look at {target} — run footfall as a user who may (ls -l {target})"
        if found is not None and stat.S_ISDIR(found.st_mode):
            problem = f"{label} is a directory — pass a {what} name, e.g. {Path(target) / ('footfall.db' if what == 'database file' else 'out')}"
        elif found is not None:
            problem = _open_problem(path, label, write=True)
    if problem is not None:
        raise Failure(problem)


def new_folder(target: str, label: str) -> None:
    """Refuse a directory footfall is to write into, made with its parents if missing: one sentence why."""
    path = Path(target)
    existing = next(p for p in (path, *path.absolute().parents) if os.path.exists(p))
    if not existing.is_dir():
        if existing == path:
            raise Failure(f"{label} is a file — pass a directory (it is made if missing)")
        raise Failure(f"{existing} is a file, not a directory, so {label} cannot be made")
    if not _may_write(existing):
        raise Failure(
            f"no permission to write into {existing} for {label} — run footfall as a user who may (ls -ld {existing})"
        )
