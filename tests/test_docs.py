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


#: A README shell line that is meant to fail ends with this comment: `# exits N` or `# exits N: what it prints`.
EXPECTED_EXIT = re.compile(r"^(?P<command>.*?)\s+# exits (?P<status>\d+)(?::\s*(?P<says>.*))?$")


def shell_blocks() -> list[str]:
    """The README's shell examples, in order (the first two are the set-up commands)."""
    return re.findall(r"```sh\n(.*?)\n```", README, flags=re.DOTALL)


def expect_exits(block: str) -> tuple[str, list[tuple[int, str]]]:
    """``block`` with each line marked ``# exits N`` wrapped so that it must exit N (any other status stops the block
    with 97); also what the marked lines say they print."""
    lines, says = [], []
    for line in block.splitlines():
        marked = EXPECTED_EXIT.match(line)
        if marked is None:
            lines.append(line)
            continue
        command, status = marked["command"], int(marked["status"])
        assert not command.rstrip().endswith("\\"), f"a line marked '# exits' must be one whole command: {line}"
        quoted = command.replace("'", "")
        lines.append(f"if {command}; then code=0; else code=$?; fi")
        lines.append(f"if [ $code -ne {status} ]; then echo 'README: exit '$code', not {status}: {quoted}' >&2; exit 97; fi")
        says.append((status, marked["says"] or ""))
    return "\n".join(lines), says


def test_readme_shell_examples_run(tmp_path: Path) -> None:
    """Every shell example in the README runs as a newcomer would paste it: in order, in one fresh directory, with the
    venv's bin first on PATH, against a live footfall started there (docs that can't rot).

    The directory starts empty but for `.venv`, a link to this test's venv (what the first set-up command makes), and
    the footfall that the first set-up command starts, serving `footfall.db` there. The two set-up commands themselves run
    elsewhere: test_install.py runs the first one verbatim in a copy of the checkout, and .ci/run is the second.

    A block fails on any non-zero exit (bash -euo pipefail) unless its line ends with the marker `# exits N` (for an
    example of a mistake): that line must then exit with status N, and the text after `# exits N:`, if any, must be on
    stderr. Stand-ins keep the machine untouched: `sudo` runs its command as is, `systemctl` and `pipx` only record
    their arguments, install-service writes into a temporary folder, and 127.0.0.1:8000 / WEBSITE-ID become the live
    server's.
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
    fresh = tmp_path / "reader"
    fresh.mkdir()
    (fresh / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    venv_bin = Path(sys.prefix) / "bin"
    assert shell_blocks()[0].endswith(".venv/bin/footfall serve"), "the live server below stands for this command"
    db = fresh / "footfall.db"
    server = LiveServer(db)
    says_checked = 0
    try:
        website = rows(db, "SELECT website_id FROM website")[0][0]
        env = {
            **os.environ,
            "PATH": f"{stubs}:{venv_bin}:{os.environ['PATH']}",
            "FOOTFALL_UNIT_DIR": str(tmp_path / "units"),
        }
        env.pop("VIRTUAL_ENV", None)
        for block in shell_blocks()[2:]:
            script, says = expect_exits(block.replace("http://127.0.0.1:8000", server.url).replace("WEBSITE-ID", website))
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script], cwd=fresh, env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
            for _, text in says:
                assert text in result.stderr, f"{block}\nexpected on stderr: {text}\ngot: {result.stderr}"
                says_checked += bool(text)
    finally:
        assert server.stop() == 0
    assert says_checked, "the README shows no mistake with what footfall says"
    calls = (tmp_path / "calls.log").read_text()
    assert "pipx install ." in calls and "systemctl enable --now footfall.service footfall-backup.timer" in calls
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "footfall-backup.service",
        "footfall-backup.timer",
        "footfall-report.service",
        "footfall-report.timer",
        "footfall.service",
    ]
    assert list((fresh / "backups").glob("footfall-*.db"))
    assert (fresh / "events.jsonl").read_text().count("/hello") == 1
    assert rows(fresh / "imported.db", "SELECT count(*) FROM events") == [(1,)]
    assert not (fresh / "nowhere.db").exists()


def test_marked_lines_must_exit_as_marked(tmp_path: Path) -> None:
    """The `# exits N` marker holds a line to that status: another status, or success, fails the block."""
    import subprocess

    def run(block: str) -> int:
        script, _ = expect_exits(block)
        return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True).returncode

    assert run("false   # exits 1\necho after") == 0
    assert run("sh -c 'exit 2'   # exits 2: anything") == 0
    assert run("sh -c 'exit 2'   # exits 1") == 97
    assert run("true   # exits 1") == 97
    assert run("false\necho never") == 1
