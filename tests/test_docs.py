"""The README is checked like code: its settings table, its two set-up commands, and its SQL."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import collector
from conftest import ROOT

README = (ROOT / "README.md").read_text()


def settings_table() -> str:
    """The README's settings table as it must read, made from collector.SETTINGS."""
    lines = ["| Option | Environment | Default | Meaning |", "|---|---|---|---|"]
    for s in collector.SETTINGS:
        flag = "--" + s.name.replace("_", "-")
        option = f"`{flag}` / `--no-{flag[2:]}`" if isinstance(s.default, bool) else f"`{flag}`"
        lines.append(f"| {option} | `{collector.env_name(s)}` | `{s.default}` | {s.help} |")
    return "\n".join(lines)


def test_readme_settings_table_matches_code() -> None:
    """Every setting, its variable, default and help appear in the README exactly as the code has them."""
    block = README.split("<!-- settings-table -->\n")[1].split("\n<!-- /settings-table -->")[0]
    assert block == settings_table()


def test_readme_starts_with_the_two_setup_commands() -> None:
    """The first two code blocks are the run command and the test command, and .ci/run runs that test command."""
    blocks = re.findall(r"```sh\n(.*?)\n```", README, flags=re.DOTALL)
    run, test = blocks[0], blocks[1]
    assert README.index(run) < README.index("##")
    assert "footfall serve" in run and "pytest" in test
    assert test in (ROOT / ".ci" / "run").read_text()


def test_readme_sql_examples_run(tmp_path: Path) -> None:
    """Each statement in the README's SQL block runs against a fresh database."""
    db = tmp_path / "docs.db"
    collector.prepare_database(str(db))
    sql_blocks = re.findall(r"```sql\n(.*?)\n```", README, flags=re.DOTALL)
    assert sql_blocks
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for block in sql_blocks:
            for statement in block.split(";"):
                body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
                if body:
                    conn.execute(body).fetchall()


def shell_blocks() -> list[str]:
    """The README's shell examples after the two set-up commands, in order."""
    return re.findall(r"```sh\n(.*?)\n```", README, flags=re.DOTALL)[2:]


def test_readme_shell_examples_run(tmp_path: Path) -> None:
    """Every shell example in the README runs, in order, against a live footfall (docs that can't rot).

    Stand-ins keep the machine untouched: `sudo` runs its command as is, `systemctl` and `pipx` only record their
    arguments, install-service writes into a temporary folder, and 127.0.0.1:8000 / WEBSITE-ID become the live server's.
    """
    import os
    import subprocess
    import sys

    from conftest import LiveServer, rows

    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "sudo").write_text('#!/bin/sh\nwhile [ "${1#*=}" != "$1" ]; do export "$1"; shift; done\nexec "$@"\n')
    for name in ("systemctl", "pipx"):
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/calls.log"\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    db = tmp_path / "footfall.db"
    server = LiveServer(db)
    try:
        website = rows(db, "SELECT website_id FROM website")[0][0]
        env = {
            **os.environ,
            "PATH": f"{stubs}:{Path(sys.executable).parent}:{os.environ['PATH']}",
            "FOOTFALL_UNIT_DIR": str(tmp_path / "units"),
        }
        for block in shell_blocks():
            script = block.replace("http://127.0.0.1:8000", server.url).replace("WEBSITE-ID", website)
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
    finally:
        assert server.stop() == 0
    calls = (tmp_path / "calls.log").read_text()
    assert "pipx install ." in calls and "systemctl enable --now footfall.service footfall-backup.timer" in calls
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "footfall-backup.service",
        "footfall-backup.timer",
        "footfall-report.service",
        "footfall-report.timer",
        "footfall.service",
    ]
    assert list((tmp_path / "backups").glob("footfall-*.db"))
    assert (tmp_path / "events.jsonl").read_text().count("/hello") == 1
    assert rows(tmp_path / "imported.db", "SELECT count(*) FROM events") == [(1,)]
