"""The store's tests run against both backends: SQLite in the test's home folder, and a real
PostgreSQL server started once per session (Debian's `postgresql` package; `make test` installs
it when missing), with a fresh schema per test so tests never see each other's rows."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

START_SECONDS = 60
PREFIX = "tunesmith-pg-"  # the servers' temporary folders
OWNER = "owner.pid"  # in each: the pid of the test session that started it


@dataclass(frozen=True)
class PostgresServer:
    socket_dir: Path
    port: int

    def url(self, schema: str | None = None) -> str:
        """A URL for psycopg: over the server's unix socket, in `schema` if given."""
        url = f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir))}&port={self.port}"
        if schema:
            url += "&options=" + quote(f"-csearch_path={schema}")
        return url


def postgres_bin() -> Path | None:
    """The newest installed server's binaries (Debian keeps them per major version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    return Path(found[-1]).parent if found else None


def _major(path: str) -> int:
    version = Path(path).parents[1].name
    return int(version) if version.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_user() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user (created if
    missing); as anyone else, as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on a free port, its socket in its own temporary folder,
    without fsync (nothing here must survive a power cut); stopped at the end of the session."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[dev]')")
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(`make test` installs Debian's postgresql package)"
        )
    user = _server_user()
    as_server = {"user": user[0], "group": user[1]} if user else {}
    _stop_orphans(bin_dir, as_server)
    # Not under pytest's basetemp: its folders are private to us, and the server's user must
    # reach its own folder.
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    (root / OWNER).write_text(str(os.getpid()))
    if user is not None:
        os.chown(root, *user)
    data, log, port = root / "data", root / "server.log", _free_port()
    subprocess.run(
        [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
         "--no-locale", "--no-sync"],
        check=True, capture_output=True, **as_server,
    )  # fmt: skip
    options = (
        f"-p {port} -k {root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    started = subprocess.run(
        [bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t",
         str(START_SECONDS), "start"],
        capture_output=True, text=True, **as_server,
    )  # fmt: skip
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL did not start:\n{started.stdout}{started.stderr}\n{_tail(log)}")
    try:
        yield PostgresServer(root, port)
    finally:
        subprocess.run(
            [bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True, **as_server,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _stop_orphans(bin_dir: Path, as_server: dict) -> None:
    """A session killed before its teardown (a timeout's SIGKILL) leaves its server running:
    stop those whose test session is gone."""
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((root / OWNER).read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        subprocess.run(
            [bin_dir / "pg_ctl", "-D", root / "data", "-m", "immediate", "-w", "stop"],
            capture_output=True, **as_server,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(log: Path) -> str:
    return log.read_text()[-4000:] if log.exists() else "(no server log)"


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A URL to a schema of its own, so each test starts from an empty, unmigrated store."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return postgres_server.url(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which database the test's `open_store()` calls reach (TUNESMITH_DATABASE_URL)."""
    if request.param == "postgres":
        monkeypatch.setenv("TUNESMITH_DATABASE_URL", request.getfixturevalue("postgres_url"))
    else:
        monkeypatch.delenv("TUNESMITH_DATABASE_URL", raising=False)
    return request.param
