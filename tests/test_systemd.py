"""The systemd units: they verify, the service is sandboxed to an exposure of at most 2.0, and footfall speaks sd_notify."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import collector
from conftest import ROOT, LiveServer

UNITS = [
    "footfall.service",
    "footfall-backup.service",
    "footfall-backup.timer",
    "footfall-report.service",
    "footfall-report.timer",
]


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: .ci/run installs systemd with apt-get")
    return found


def installed_copy(tmp_path: Path, name: str) -> Path:
    """The unit with ExecStart pointing at this environment's footfall, as `footfall install-service` writes it."""
    footfall = Path(sys.executable).with_name("footfall")
    text = (ROOT / "systemd" / name).read_text().replace("/usr/local/bin/footfall", str(footfall))
    out = tmp_path / name
    out.write_text(text)
    return out


@pytest.mark.parametrize("name", UNITS)
def test_units_verify(tmp_path: Path, name: str) -> None:
    """`systemd-analyze verify` accepts every unit."""
    for unit in UNITS:
        installed_copy(tmp_path, unit)
    result = subprocess.run([systemd_analyze(), "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "footfall" not in result.stderr, result.stderr  # no warnings about our units


def test_service_is_sandboxed(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=yes` rates footfall.service at most 2.0 ("OK" or better)."""
    unit = installed_copy(tmp_path, "footfall.service")
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for footfall\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_service_keys() -> None:
    """The unit is Type=notify with the state directory, environment file and restart policy the README promises."""
    text = (ROOT / "systemd" / "footfall.service").read_text()
    for line in (
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=footfall",
        "EnvironmentFile=-/etc/footfall/footfall.env",
        "Restart=on-failure",
        "Environment=FOOTFALL_DB=/var/lib/footfall/footfall.db",
        "TimeoutStopSec=30",
    ):
        assert line in text.splitlines(), line


def test_service_has_room_for_its_connections() -> None:
    """LimitNOFILE leaves room for --max-connections (one descriptor each) plus the database, WAL and listening socket."""
    text = (ROOT / "systemd" / "footfall.service").read_text()
    (limit,) = re.findall(r"^LimitNOFILE=(\d+)$", text, flags=re.MULTILINE)
    assert int(limit) >= 2 * collector.Config().max_connections + 100


@pytest.mark.slow
def test_serve_notifies_systemd(db_path: Path, tmp_path: Path) -> None:
    """Under Type=notify footfall sends READY=1 once it listens, STOPPING=1 on SIGTERM, and exits 0."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(20)
        server = LiveServer(db_path, env={"NOTIFY_SOCKET": str(path)})
        ready = listener.recv(4096).decode()
        assert ready.startswith("READY=1\n") and server.url in ready
        assert server.stop(signal.SIGTERM) == 0
        assert listener.recv(4096).decode().startswith("STOPPING=1")
