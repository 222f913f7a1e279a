"""Every mistake gets one sentence: each command against each kind of wrong path or value, and the messages people see first.

The table runs every command × {no database, unreadable path, bad value, missing directory, a directory as --db} in
process (CliRunner) and checks the exit status (2 for a usage error, 1 for a failure), that stderr is exactly one line
`footfall: error: …` naming the path or value, that nothing went to stdout, and that no database file appeared where there
was none (only serve, site add and import make one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import collector
import footfall.cli
import footfall.ops
import footfall.umami
from conftest import add_website, rows

SOME_ID = "b59e9c65-ae32-47f1-8400-119fcf4861c4"
#: A ClickHouse URL where nothing answers: every case below fails before footfall would talk to it.
NO_CLICKHOUSE = "http://127.0.0.1:9"
#: An Umami website_event table with no rows, as psql writes it.
EVENTS_HEADER = ",".join(footfall.umami.UMAMI_COLUMNS["website_event"]) + "\n"
NOBODY = 65534


def invoke(args: list[str], stdin: str | None = None) -> Result:
    return CliRunner().invoke(footfall.cli.cli, args, input=stdin)


def no_database(db: Path) -> str:
    return f"no database at {db} — start `footfall serve --db {db}` or pass --db"


def as_directory(d: Path) -> str:
    return f"invalid value for '--db': {d} is a directory — pass the database file in it, e.g. --db {d / 'footfall.db'}"


@contextlib.contextmanager
def as_another_user() -> Iterator[None]:
    """Act as user nobody while the tests run as root (root may open any file); as ourselves otherwise."""
    if os.geteuid() != 0:
        yield
        return
    import rich.console  # noqa: F401 - what commands import late, while the interpreter's own files are still ours
    import rich.progress  # noqa: F401
    import uvicorn.config  # noqa: F401
    import uvicorn.server  # noqa: F401

    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory anybody may enter and write in (pytest's own are the owner's only), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="footfall-cli-"))
    folder.chmod(0o777)
    yield folder
    for path in folder.rglob("*"):
        if path.is_dir():
            path.chmod(0o700)
    shutil.rmtree(folder)


def footfall_db(folder: Path) -> tuple[Path, str]:
    db = folder / "footfall.db"
    collector.prepare_database(str(db))
    return db, add_website(db)


# command → its arguments for a database path, a website id and a working folder (and standard input, if any).
Args = Callable[[Path, str, Path], list[str]]
COMMANDS: dict[str, tuple[Args, str | None]] = {
    "serve": (lambda db, site, f: ["serve", "--db", str(db), "--port", "0"], None),
    "site add": (lambda db, site, f: ["site", "add", "blog", "--db", str(db)], None),
    "site list": (lambda db, site, f: ["site", "list", "--db", str(db)], None),
    "site remove": (lambda db, site, f: ["site", "remove", site, "--db", str(db)], None),
    "site retention": (lambda db, site, f: ["site", "retention", site, "30", "--db", str(db)], None),
    "site share": (lambda db, site, f: ["site", "share", site, "--db", str(db)], None),
    "password": (lambda db, site, f: ["password", "--stdin", "--db", str(db)], "correct horse battery staple\n"),
    "backup": (lambda db, site, f: ["backup", "--db", str(db), str(f / "copy.db")], None),
    "check": (lambda db, site, f: ["check", "--db", str(db)], None),
    "prune": (lambda db, site, f: ["prune", "--older-than", "400d", "--db", str(db)], None),
    "forget": (lambda db, site, f: ["forget", "--distinct-id", "user-42", "--db", str(db)], None),
    "export": (lambda db, site, f: ["export", "-o", str(f / "out.csv"), "--db", str(db)], None),
    "stats": (lambda db, site, f: ["stats", "--db", str(db)], None),
    "import umami": (lambda db, site, f: ["import", "umami", str(f / "website_event.csv"), "--db", str(db)], None),
    "api-key create": (lambda db, site, f: ["api-key", "create", "dashboard", "--db", str(db)], None),
    "api-key list": (lambda db, site, f: ["api-key", "list", "--db", str(db)], None),
    "api-key revoke": (lambda db, site, f: ["api-key", "revoke", "dashboard", "--db", str(db)], None),
    "report": (lambda db, site, f: ["report", "--db", str(db)], None),
    "ship clickhouse": (lambda db, site, f: ["ship", "clickhouse", "--url", NO_CLICKHOUSE, "--db", str(db)], None),
    "import clickhouse": (lambda db, site, f: ["import", "clickhouse", "--url", NO_CLICKHOUSE, "--db", str(db)], None),
}
#: The commands that make a database where there is none.
MAKERS = {"serve", "site add", "import umami", "import clickhouse"}
#: The commands that only read the database (the others change it, so they need write permission).
READERS = {"site list", "backup", "check", "export", "api-key list"}

# command → (arguments with a wrong value, given a database, a site and a folder; the one line it must print).
BAD_VALUES: dict[str, tuple[Callable[[Path, str, Path], list[str]], Callable[[Path, str, Path], str]]] = {
    "serve": (
        lambda db, site, f: ["serve", "--db", str(db), "--port", "eighty"],
        lambda db, site, f: "invalid value for '--port': 'eighty' is not a valid integer — see `footfall serve --help`",
    ),
    "site add": (
        lambda db, site, f: ["site", "add", "blog", "--domain", "not a domain!", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for '--domain': 'not a domain!' is not a host name like blog.example.com "
            "(letters, digits and hyphens between dots, optionally :PORT) — see `footfall site add --help`"
        ),
    ),
    "site list": (lambda db, site, f: ["site", "list", "--db", str(f)], lambda db, site, f: as_directory(f)),
    "site remove": (
        lambda db, site, f: ["site", "remove", "nope", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for 'WEBSITE-ID': 'nope' is not a website id (a UUID like "
            "67fdaff4-97d0-4e97-b367-29bd0e201c2d; `footfall site list` shows them) — see `footfall site remove --help`"
        ),
    ),
    "site retention": (
        lambda db, site, f: ["site", "retention", site, "soon", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for 'DAYS|off': 'soon' is not a number of days (1 or more) or 'off' — "
            "see `footfall site retention --help`"
        ),
    ),
    "site share": (
        lambda db, site, f: ["site", "share", site, "--base-url", "x", "--db", str(f)],
        lambda db, site, f: as_directory(f),
    ),
    "password": (lambda db, site, f: ["password", "--stdin", "--db", str(f)], lambda db, site, f: as_directory(f)),
    "backup": (
        lambda db, site, f: ["backup", "--keep-days", "0", "--db", str(db), str(f)],
        lambda db, site, f: "invalid value for '--keep-days': 0 is not in the range x>=1 — see `footfall backup --help`",
    ),
    "check": (lambda db, site, f: ["check", "--db", str(f)], lambda db, site, f: as_directory(f)),
    "prune": (
        lambda db, site, f: ["prune", "--older-than", "soon", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for '--older-than': 'soon' is not a duration like 36h, 400d or 12w "
            "(hours, days or weeks) — see `footfall prune --help`"
        ),
    ),
    "forget": (
        lambda db, site, f: ["forget", "--distinct-id", "x", "--site", "blog", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for '--site': 'blog' is not a website id (a UUID like "
            "67fdaff4-97d0-4e97-b367-29bd0e201c2d; `footfall site list` shows them) — see `footfall forget --help`"
        ),
    ),
    "export": (
        lambda db, site, f: ["export", "--since", "yesterday", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for '--since': 'yesterday' does not match the formats '%Y-%m-%d', "
            "'%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S' — see `footfall export --help`"
        ),
    ),
    "stats": (
        lambda db, site, f: ["stats", "--period", "a week", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for '--period': 'a week' is not a duration like 36h, 400d or 12w "
            "(hours, days or weeks) — see `footfall stats --help`"
        ),
    ),
    "import umami": (
        lambda db, site, f: ["import", "umami", str(f / "nothing.csv"), "--db", str(db)],
        lambda db, site, f: (
            f"invalid value for 'FILES...': File '{f / 'nothing.csv'}' does not exist — see `footfall import umami --help`"
        ),
    ),
    "api-key create": (lambda db, site, f: ["api-key", "create", "x", "--db", str(f)], lambda db, site, f: as_directory(f)),
    "api-key list": (lambda db, site, f: ["api-key", "list", "--db", str(f)], lambda db, site, f: as_directory(f)),
    "api-key revoke": (lambda db, site, f: ["api-key", "revoke", "x", "--db", str(f)], lambda db, site, f: as_directory(f)),
    "report": (
        lambda db, site, f: ["report", "--smtp-port", "0", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for '--smtp-port': 0 is not in the range 1<=x<=65535 — see `footfall report --help`"
        ),
    ),
    "ship clickhouse": (
        lambda db, site, f: ["ship", "clickhouse", "--batch-size", "5", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for '--batch-size': 5 is not in the range 100<=x<=1000000 — see `footfall ship clickhouse --help`"
        ),
    ),
    "import clickhouse": (
        lambda db, site, f: ["import", "clickhouse", "--site", "blog", "--db", str(db)],
        lambda db, site, f: (
            "invalid value for '--site': 'blog' is not a website id (a UUID like "
            "67fdaff4-97d0-4e97-b367-29bd0e201c2d; `footfall site list` shows them) — see `footfall import clickhouse --help`"
        ),
    ),
}


def assert_one_line(result: Result, status: int, message: str) -> None:
    """Exit ``status``, nothing on stdout, and exactly ``footfall: error: MESSAGE`` on stderr."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert (result.exit_code, result.stdout, result.stderr) == (status, "", f"footfall: error: {message}\n")


def database_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.db*"))


@pytest.mark.parametrize("command", COMMANDS)
def test_no_database(command: str, place: Path) -> None:
    """Pointed at a path with no database, a command that reads or changes one says so and creates nothing."""
    args, stdin = COMMANDS[command]
    (place / "website_event.csv").write_text(EVENTS_HEADER)
    db = place / "missing.db"
    if command in ("serve", "import clickhouse"):
        pytest.skip(f"{command} makes the database, then serves or reads ClickHouse: their own tests show it")
    result = invoke(args(db, SOME_ID, place), stdin)
    if command in MAKERS:
        assert result.exit_code == 0, result.output
        if command == "site add":  # and no empty 'default' beside it
            assert rows(db, "SELECT name FROM website") == [("blog",)]
        return
    assert_one_line(result, 1, no_database(db))
    assert database_files(place) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_unreadable_database(command: str, place: Path) -> None:
    """A database this user may not open gets a sentence naming it and who may (never 'disk I/O error')."""
    args, stdin = COMMANDS[command]
    db, site = footfall_db(place)
    (place / "website_event.csv").write_text(EVENTS_HEADER)
    (place / "website_event.csv").chmod(0o644)
    db.chmod(0)
    with as_another_user():
        result = invoke(args(db, site, place), stdin)
    verb = "read" if command in READERS else "change"
    assert_one_line(result, 1, f"no permission to {verb} {db} — run footfall as the user who owns it (ls -l {db})")
    assert database_files(place) == ["footfall.db"]


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_value(command: str, place: Path) -> None:
    """A wrong value is a usage error: exit 2 and one line naming the option and the value, not click's usage text."""
    args, message = BAD_VALUES[command]
    db, site = footfall_db(place)
    before = db.read_bytes()
    result = invoke(args(db, site, place), COMMANDS[command][1])
    assert_one_line(result, 2, message(db, site, place))
    assert db.read_bytes() == before


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_directory(command: str, place: Path) -> None:
    """A --db in a directory that does not exist names that directory; makers say to create it, readers that it is wrong."""
    args, stdin = COMMANDS[command]
    (place / "website_event.csv").write_text(EVENTS_HEADER)
    db = place / "gone" / "footfall.db"
    result = invoke(args(db, SOME_ID, place), stdin)
    if command in MAKERS:
        message = f"no directory {db.parent} for --db {db} — create it first (mkdir -p {db.parent}) or pass another path"
    else:
        message = f"no directory {db.parent}, so no database at {db} — pass the database file with --db"
    assert_one_line(result, 1, message)
    assert not db.parent.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_directory_as_database(command: str, place: Path) -> None:
    """A directory given as --db is a wrong value (exit 2) with the file to pass instead."""
    args, stdin = COMMANDS[command]
    (place / "website_event.csv").write_text(EVENTS_HEADER)
    result = invoke(args(place, SOME_ID, place), stdin)
    assert_one_line(result, 2, as_directory(place))
    assert database_files(place) == []


def test_install_service_paths(place: Path) -> None:
    """install-service names a unit directory it may not write, refuses a file, and makes a missing one."""
    locked = place / "locked"
    locked.mkdir(mode=0o555)
    with as_another_user():
        result = invoke(["install-service", "--unit-dir", str(locked)])
    assert_one_line(
        result,
        1,
        f"no permission to write into {locked} for --unit-dir {locked} — run footfall as a user who may (ls -ld {locked})",
    )
    a_file = place / "units.txt"
    a_file.write_text("")
    result = invoke(["install-service", "--unit-dir", str(a_file)])
    assert_one_line(
        result, 2, f"invalid value for '--unit-dir': Directory '{a_file}' is a file — see `footfall install-service --help`"
    )
    made = place / "new" / "units"
    assert invoke(["install-service", "--unit-dir", str(made)]).exit_code == 0
    assert sorted(p.name for p in made.iterdir()) == [
        "footfall-backup.service",
        "footfall-backup.timer",
        "footfall-report.service",
        "footfall-report.timer",
        "footfall.service",
    ]


def test_output_paths_are_named(place: Path) -> None:
    """export and backup name an output directory that does not exist (the README's `export -o /nonexistent/x.csv`)."""
    db, _ = footfall_db(place)
    target = place / "nonexistent" / "x.csv"
    result = invoke(["export", "-o", str(target), "--db", str(db)])
    assert_one_line(
        result,
        1,
        f"no directory {target.parent} for -o {target} — create it first (mkdir -p {target.parent}) or pass another path",
    )
    copy = place / "nonexistent" / "x.db"
    result = invoke(["backup", "--db", str(db), str(copy)])
    assert_one_line(
        result,
        1,
        f"no directory {copy.parent} for DEST {copy} — create it first (mkdir -p {copy.parent}) or pass another path",
    )


def test_files_that_are_not_footfall_databases(place: Path) -> None:
    """A text file, an empty file and someone else's SQLite file each get their own sentence."""
    notes = place / "notes.txt"
    notes.write_text("not a database, just notes\n")
    assert_one_line(
        invoke(["check", "--db", str(notes)]), 1, f"{notes} is not a SQLite database — pass footfall's database file with --db"
    )
    empty = place / "empty.db"
    empty.write_bytes(b"")
    assert_one_line(
        invoke(["site", "list", "--db", str(empty)]),
        1,
        f"{empty} is an empty file, not a footfall database — start `footfall serve --db {empty}` to make one there",
    )
    other = place / "other.db"
    with contextlib.closing(__import__("sqlite3").connect(other)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    assert_one_line(
        invoke(["stats", "--db", str(other)]),
        1,
        f"{other} is a SQLite database but not footfall's (it has no website table) — pass footfall's with --db",
    )


def test_busy_port(place: Path) -> None:
    """serve on a port in use says so before announcing anything, and creates no database."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = invoke(["serve", "--db", str(place / "footfall.db"), "--port", str(port)])
    assert_one_line(result, 1, f"address already in use: 127.0.0.1:{port} — is footfall already running? use --port")
    assert database_files(place) == []


def test_site_names_are_unique_in_any_case(place: Path) -> None:
    """A second site called 'Blog' next to 'blog' is refused with the one it clashes with; a removed name is free again."""
    db = str(place / "footfall.db")
    first = invoke(["site", "add", "blog", "--db", db]).stdout.strip()
    result = invoke(["site", "add", "Blog", "--db", db])
    assert_one_line(result, 1, f"a website named 'blog' already exists ({first}) — choose another name")
    assert invoke(["site", "remove", first, "--db", db]).exit_code == 0
    assert invoke(["site", "add", "Blog", "--db", db]).exit_code == 0


@pytest.mark.parametrize(
    ("domain", "stored"),
    [
        ("blog.example.com", "blog.example.com"),
        ("Shop.Example.COM.", "shop.example.com"),
        ("localhost:8080", "localhost:8080"),
        ("bücher.example", "bücher.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_good_domains(domain: str, stored: str, place: Path) -> None:
    """Host names, with a port or as an IDN, are kept (lower-case, no trailing dot)."""
    db = place / "footfall.db"
    result = invoke(["site", "add", "s", "--domain", domain, "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT domain FROM website") == [(stored,)]


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        (
            "not a domain!",
            "is not a host name like blog.example.com (letters, digits and hyphens between dots, optionally :PORT)",
        ),
        (
            "-blog.example.com",
            "is not a host name like blog.example.com (letters, digits and hyphens between dots, optionally :PORT)",
        ),
        ("a..b", "is not a host name like blog.example.com (letters, digits and hyphens between dots, optionally :PORT)"),
        (
            "x" * 64 + ".example",
            "is not a host name like blog.example.com (letters, digits and hyphens between dots, optionally :PORT)",
        ),
        ("blog.example.com:99999", "has no valid port after ':' (1 to 65535)"),
        ("https://blog.example.com/", "is a URL — give only its host name, e.g. blog.example.com"),  # says what to do
    ],
)
def test_bad_domains(domain: str, reason: str, place: Path) -> None:
    """A domain that is no host name is refused with the value and what a host name looks like."""
    result = invoke(["site", "add", "s", "--domain", domain, "--db", str(place / "footfall.db")])
    hint = "" if " — " in reason else " — see `footfall site add --help`"
    assert_one_line(result, 2, f"invalid value for '--domain': {domain!r} {reason}{hint}")
    assert database_files(place) == []


def test_share_of_unknown_and_removed_sites(place: Path) -> None:
    """site share says whether a site does not exist or was removed; a removed site's link can still be revoked."""
    db, site = footfall_db(place)
    assert_one_line(
        invoke(["site", "share", SOME_ID, "--db", str(db)]),
        1,
        f"no website with id {SOME_ID} — `footfall site list` shows the ids",
    )
    assert invoke(["site", "share", site, "--db", str(db)]).exit_code == 0
    assert invoke(["site", "remove", site, "--db", str(db)]).exit_code == 0
    assert_one_line(
        invoke(["site", "share", site, "--db", str(db)]),
        1,
        f"website {site} (test) is removed — only active websites can be shared",
    )
    revoked = invoke(["site", "share", site, "--revoke", "--db", str(db)])
    assert (revoked.exit_code, revoked.stdout) == (0, f"{site}: share link revoked\n")


def test_password_without_a_terminal(place: Path) -> None:
    """`footfall password` with no terminal says to use --stdin (no GetPassWarning, no 'Aborted!')."""
    db, _ = footfall_db(place)
    result = invoke(["password", "--db", str(db)], "typed into a pipe\n")
    assert_one_line(
        result,
        2,
        "no terminal to type the password in — give it on standard input: footfall password --stdin <<< 'PASSWORD'",
    )
    assert rows(db, "SELECT count(*) FROM setting WHERE name = 'password_hash'") == [(0,)]


def test_check_on_a_fresh_database(place: Path) -> None:
    """check on a database just made tells the salts' periods and when they change, in words."""
    db = place / "footfall.db"
    assert invoke(["site", "add", "blog", "--db", str(db)]).exit_code == 0
    result = invoke(["check", "--db", str(db)])
    now = dt.datetime.now(dt.timezone.utc)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (month + dt.timedelta(days=32)).replace(day=1)
    left = following - now
    in_words = f"{left.days} days" if left.days >= 2 else f"{left.seconds // 3600 + 24 * left.days} hours"
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "integrity: ok\n"
        f"schema version: {collector.SCHEMA_VERSION}, as this footfall expects\n"
        "rows website: 1\nrows session: 0\nrows visit: 0\nrows website_event: 0\nrows event_data: 0\nrows session_data: 0\n"
        "rows bot_counter: 0\nrows salt: 2\n"
        f"current salt: month {month:%Y-%m}, rotates in {in_words}\n"
        f"next salt: month {following:%Y-%m}, ready\n"
    )


def test_salts_in_words() -> None:
    """Each salt is current, next, previous (within the grace hour) or old, with how long in words people use."""
    day = 86400
    start = 1_800_000_000
    salts = [("week:2027-01-10", start - 7 * day, start), ("week:2027-01-17", start, start + 7 * day)]
    salts.append(("week:2027-01-24", start + 7 * day, start + 14 * day))
    assert footfall.ops.describe_salts(salts, start + 5 * day + 7200) == [
        "old salt: week of 2027-01-10, ended 5 days ago, deleted when footfall next runs",
        "current salt: week of 2027-01-17, rotates in 46 hours",
        "next salt: week of 2027-01-24, ready",
    ]
    assert footfall.ops.describe_salts(salts[:2], start + 600) == [
        "previous salt: week of 2027-01-10, ended 10 minutes ago, deleted within the hour",
        "current salt: week of 2027-01-17, rotates in 6 days",
    ]
    assert footfall.ops.describe_salts([], start) == ["current salt: none yet — `footfall serve` makes one when it starts"]
    assert [footfall.ops.in_words(s) for s in (30, 60, 119, 7199, 7200, 2 * day - 1, 2 * day)] == [
        "less than a minute",
        "1 minute",
        "1 minute",
        "119 minutes",
        "2 hours",
        "47 hours",
        "2 days",
    ]


def test_help_shows_types_not_text() -> None:
    """Every option and argument of every command shows what it takes (INTEGER, DURATION, CIDR…, FILE), never TEXT."""

    def commands(group: footfall.cli.click.Group, path: list[str]) -> Iterator[list[str]]:
        for name, command in group.commands.items():
            yield [*path, name]
            if isinstance(command, footfall.cli.click.Group):
                yield from commands(command, [*path, name])

    seen = {}
    for path in [[], *commands(footfall.cli.cli, [])]:
        result = invoke([*path, "--help"])
        assert result.exit_code == 0, result.output
        assert " TEXT" not in result.output, path
        seen[" ".join(path)] = result.output
    assert "--port INTEGER" in seen["serve"] and "--trusted-proxies CIDR[,CIDR…]" in seen["serve"]
    assert "--older-than DURATION" in seen["prune"] and "--db FILE" in seen["check"]


def test_debug_shows_the_traceback(place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error is one line pointing at --debug; with --debug the traceback comes first."""
    db, _ = footfall_db(place)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(footfall.cli, "check_database", broken)
    result = invoke(["check", "--db", str(db)])
    assert_one_line(
        result, 1, "unexpected RuntimeError: the disk caught fire — `footfall --debug …` shows the traceback; please report it"
    )
    debug = invoke(["--debug", "check", "--db", str(db)])
    assert debug.exit_code == 1 and debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.endswith(
        "footfall: error: unexpected RuntimeError: the disk caught fire — `footfall --debug …` shows the traceback; please report it\n"
    )
