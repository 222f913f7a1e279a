"""The command line: settings precedence, `footfall site …`, and `footfall serve` end to end as a real process."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import collector
import footfall.cli
from conftest import FIREFOX, LiveServer, rows

SEED_EVENT = {
    "payload": {
        "hostname": "your-hostname",
        "language": "en-US",
        "referrer": "",
        "screen": "1920x1080",
        "title": "dashboard",
        "url": "/",
        "website": "WEBSITE",
        "name": "event-name",
        "data": {"foo": "bar"},
    },
    "type": "event",
}
SEED_BATCH = [
    {"payload": {"hostname": "your-hostname", "url": "/page-1", "website": "WEBSITE", "name": "event-name"}, "type": "event"},
    {"payload": {"hostname": "your-hostname", "url": "/page-2", "website": "WEBSITE", "name": "event-name"}, "type": "event"},
]


def with_site(body: object, website: str) -> object:
    return collector.msgspec.json.decode(collector.msgspec.json.encode(body).replace(b"WEBSITE", website.encode()))


def test_config_defaults_are_the_settings_defaults() -> None:
    """Config and SETTINGS name the same fields with the same defaults (the CLI and README are made from SETTINGS)."""
    assert {f.name: f.default for f in collector.dataclasses.fields(collector.Config)} == {
        s.name: s.default for s in collector.SETTINGS
    }


def test_settings_precedence() -> None:
    """An option beats its FOOTFALL_* variable, which beats the default."""
    assert collector.load_config({}, {}) == collector.Config()
    env = {"FOOTFALL_PORT": "9000", "FOOTFALL_DB": "/tmp/x.db", "FOOTFALL_BOT_CHECK": "false"}
    config = collector.load_config({"port": 9100}, env)
    assert (config.port, config.db, config.bot_check) == (9100, "/tmp/x.db", False)
    assert collector.load_config({"bot_check": True}, env).bot_check is True


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        ({"port": "eighty"}, {}, "port must be a whole number"),
        ({}, {"FOOTFALL_PORT": "70000"}, "port must be at most 65535"),
        ({}, {"FOOTFALL_BOT_CHECK": "maybe"}, "bot_check must be true or false"),
        ({}, {"FOOTFALL_SALT_ROTATION": "year"}, "salt_rotation must be one of day, week, month"),
        ({"visit_timeout": "0"}, {}, "visit_timeout must be positive"),
        ({"write_queue_max": "10"}, {}, "write_queue_max must be at least batch_max_items"),
    ],
)
def test_bad_settings_are_explained(options: dict[str, str], env: dict[str, str], message: str) -> None:
    """A bad value names the setting and what it must be."""
    with pytest.raises(collector.ConfigError, match=message):
        collector.load_config(options, env)


def test_every_command_has_help_with_an_example() -> None:
    """Each command's --help works and shows an example call."""
    runner = CliRunner()
    commands = [
        ["serve"],
        ["site", "add"],
        ["site", "list"],
        ["site", "remove"],
        ["site", "retention"],
        ["backup"],
        ["check"],
        ["prune"],
        ["forget"],
        ["export"],
        ["stats"],
        ["install-service"],
        ["import", "umami"],
    ]
    for args in commands:
        result = runner.invoke(footfall.cli.cli, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert re.search(r"Example: (sudo )?footfall ", result.output), args


def test_site_commands(tmp_path: Path) -> None:
    """add prints only the UUID (or keeps --id), list shows sites, remove soft-deletes; mistakes are one-line errors."""
    db = str(tmp_path / "f.db")
    runner = CliRunner()
    added = runner.invoke(footfall.cli.cli, ["site", "add", "blog", "--domain", "blog.example.com", "--db", db])
    assert added.exit_code == 0, added.output
    new_id = added.output.strip()
    assert collector.UUID_RE.fullmatch(new_id)
    kept = runner.invoke(footfall.cli.cli, ["site", "add", "shop", "--id", "67FDAFF4-97d0-4e97-b367-29bd0e201c2d", "--db", db])
    assert kept.output.strip() == "67fdaff4-97d0-4e97-b367-29bd0e201c2d"
    again = runner.invoke(
        footfall.cli.cli, ["site", "add", "store", "--id", "67fdaff4-97d0-4e97-b367-29bd0e201c2d", "--db", db]
    )
    assert (again.exit_code, again.stderr) == (
        1,
        "footfall: error: a website with id 67fdaff4-97d0-4e97-b367-29bd0e201c2d already exists — "
        "`footfall site list` shows it\n",
    )
    bad = runner.invoke(footfall.cli.cli, ["site", "add", "x", "--id", "nope", "--db", db])
    assert (bad.exit_code, bad.stderr) == (
        2,
        "footfall: error: invalid value for '--id': 'nope' is not a website id (a UUID like "
        "67fdaff4-97d0-4e97-b367-29bd0e201c2d; `footfall site list` shows them) — see `footfall site add --help`\n",
    )
    listing = runner.invoke(footfall.cli.cli, ["site", "list", "--db", db]).output.splitlines()
    assert [line.split("\t")[1:] for line in listing] == [  # site add makes no 'default' site
        ["blog", "blog.example.com", "active"],
        ["shop", "", "active"],
    ]
    removed = runner.invoke(footfall.cli.cli, ["site", "remove", new_id, "--db", db])
    assert removed.exit_code == 0 and new_id in removed.output
    twice = runner.invoke(footfall.cli.cli, ["site", "remove", new_id, "--db", db])
    assert (twice.exit_code, twice.stderr) == (1, f"footfall: error: website {new_id} is already removed\n")
    assert rows(tmp_path / "f.db", "SELECT name FROM website WHERE deleted_at IS NOT NULL") == [("blog",)]


def test_site_db_from_environment(tmp_path: Path) -> None:
    """FOOTFALL_DB chooses the database for site commands too."""
    db = tmp_path / "env.db"
    result = CliRunner().invoke(footfall.cli.cli, ["site", "add", "envsite"], env={"FOOTFALL_DB": str(db)})
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT name FROM website WHERE website_id = ?", (result.output.strip(),)) == [("envsite",)]


def test_main_returns_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """main() returns 0 on success, 1 with a one-line message on failure and 2 on a usage error, never a traceback."""
    db = str(tmp_path / "m.db")
    assert footfall.cli.main(["site", "add", "blog", "--db", db]) == 0
    capsys.readouterr()
    assert footfall.cli.main(["site", "remove", "b59e9c65-ae32-47f1-8400-119fcf4861c4", "--db", db]) == 1
    assert capsys.readouterr().err == (
        "footfall: error: no website with id b59e9c65-ae32-47f1-8400-119fcf4861c4 — `footfall site list` shows the ids\n"
    )
    assert footfall.cli.main(["site", "lsit"]) == 2
    assert capsys.readouterr().err == "footfall: error: no such command 'lsit' — did you mean 'list'?\n"
    assert footfall.cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"footfall, version {collector.__version__}\n"


@pytest.mark.slow
def test_serve_end_to_end(db_path: Path) -> None:
    """`footfall serve` prints the default site's script tag, takes the seed's payloads over real HTTP, and on SIGTERM
    exits 0 with every acknowledged event in the file."""
    server = LiveServer(db_path)
    try:
        output = server.output()
        assert f"listening on {server.url}" in output
        website = rows(db_path, "SELECT website_id FROM website WHERE name = 'default'")[0][0]
        assert f'<script defer src="{server.url}/script.js" data-website-id="{website}"></script>' in output
        acknowledged = 0
        with httpx.Client(base_url=server.url, headers={"User-Agent": FIREFOX}) as http:
            send = http.post("/api/send", json=with_site(SEED_EVENT, website))
            assert send.status_code == 200 and set(send.json()) == {"cache", "sessionId", "visitId"}
            acknowledged += 1
            batch = http.post("/api/batch", json=with_site(SEED_BATCH, website))
            assert batch.json()["processed"] == 2 and batch.json()["errors"] == 0
            acknowledged += 2
            for i in range(200):
                if (
                    http.post(
                        "/api/send", json={"type": "event", "payload": {"website": website, "url": f"/n{i}"}}
                    ).status_code
                    == 200
                ):
                    acknowledged += 1
        assert server.stop(signal.SIGTERM) == 0
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGKILL)
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(acknowledged,)]
    assert rows(db_path, "SELECT event_name, data_key, string_value FROM custom_events WHERE url_path = '/'") == [
        ("event-name", "foo", "bar")
    ]
    assert rows(db_path, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.slow
def test_serve_reads_environment_and_sees_site_changes(db_path: Path) -> None:
    """FOOTFALL_* variables configure serve; a site removed with the CLI while serving is refused within seconds."""
    server = LiveServer(db_path, env={"FOOTFALL_BOT_CHECK": "off"})
    try:
        website = CliRunner().invoke(footfall.cli.cli, ["site", "add", "live", "--db", str(db_path)]).output.strip()
        with httpx.Client(base_url=server.url, headers={"User-Agent": "curl/8.4.0"}) as http:
            body = {"type": "event", "payload": {"website": website, "url": "/"}}
            assert set(http.post("/api/send", json=body).json()) == {"cache", "sessionId", "visitId"}  # bot check off
            assert CliRunner().invoke(footfall.cli.cli, ["site", "remove", website, "--db", str(db_path)]).exit_code == 0
            deadline = time.monotonic() + 10
            while http.post("/api/send", json=body).status_code == 200:
                assert time.monotonic() < deadline, "removed site still accepted"
                time.sleep(0.2)
            assert http.post("/api/send", json=body).json()["error"]["message"] == "Website not found."
    finally:
        assert server.stop() == 0


def test_serve_refuses_bad_options(tmp_path: Path) -> None:
    """A bad setting stops serve before it starts, with a one-line error naming the option or variable (exit 2)."""
    result = CliRunner().invoke(footfall.cli.cli, ["serve", "--db", str(tmp_path / "x.db"), "--port", "70000"])
    assert (result.exit_code, result.stderr) == (
        2,
        "footfall: error: invalid value for '--port': 70000 is not in the range 0<=x<=65535 — see `footfall serve --help`\n",
    )
    from_env = CliRunner().invoke(
        footfall.cli.cli, [], env={"FOOTFALL_BOT_CHECK": "maybe", "FOOTFALL_DB": str(tmp_path / "x.db")}
    )
    assert (from_env.exit_code, from_env.stderr) == (
        2,
        "footfall: error: invalid value for FOOTFALL_BOT_CHECK (the environment's --bot-check): 'maybe' is neither "
        "true nor false (1/0, yes/no, on/off) — see `footfall serve --help`\n",
    )
    missing = tmp_path / "no" / "such" / "dir.db"
    result = CliRunner().invoke(footfall.cli.cli, ["serve", "--db", str(missing)])
    assert (result.exit_code, result.stderr) == (
        1,
        f"footfall: error: no directory {missing.parent} for --db {missing} — create it first "
        f"(mkdir -p {missing.parent}) or pass another path\n",
    )
    assert not (tmp_path / "x.db").exists()
