"""A throwaway PostgreSQL server for the scale-out tests: Debian's package (`make test` installs it), a new
cluster in a temporary folder, listening on a free loopback port only, trust authentication for local users.

PostgreSQL refuses to run as root, so under root the cluster belongs to the package's `postgres` user and every
server command runs as that user (runuser); anyone else runs it as themselves.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps them under /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalPostgres:
    folder: Path
    port: int
    user: str
    bin: Path

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)


def start_postgres() -> LocalPostgres:
    """initdb + pg_ctl start on 127.0.0.1:<free port>, socket in the cluster's own folder."""
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError(
            "PostgreSQL is not installed: `make test` installs Debian's package "
            "(or: sudo apt-get install -y postgresql)"
        )
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    folder = Path(tempfile.mkdtemp(prefix="scale-out-pg-"))  # under /tmp: the postgres user must reach it
    if os.geteuid() == 0:
        shutil.chown(folder, user, user)
    server = LocalPostgres(folder, free_port(), user, binaries)
    try:
        server._run("initdb", "-D", str(folder / "data"), "-U", user, "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {folder} -c max_connections=50 -c fsync=off"
        server._run(
            "pg_ctl", "-D", str(folder / "data"), "-o", options, "-l", str(folder / "server.log"), "-w", "start"
        )
    except subprocess.CalledProcessError as error:
        log = folder / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else error.stderr
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {detail}") from error
    return server


def running_postgres() -> Iterator[LocalPostgres]:
    """For a module fixture: `yield from running_postgres()`; the server is stopped and its folder removed after."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
