"""One error model for the whole package: what failed, and whether trying again can help.

    DqError                         every error this package raises on purpose
    ├── TerminalError               no retry can cure it: never retried, never auto-repaired
    │   ├── RefusedInput            a catalog file or catalog id fails validation (I6);
    │   │   └── CatalogError          catalog.entry: names file, record and reason
    │   ├── ConfigurationError      a setting cannot work (CLI exit 2)
    │   │   └── ModelUnavailable      a recorded model (live or standby) cannot be loaded here
    │   ├── LockLost                the run no longer owns its catalog: its commit was refused (I8)
    │   ├── StaleSource             the parse is not of the file as it is now: a newer run applies it (I8)
    │   └── UnknownEntries          a review names entries the catalog does not hold
    └── TransientError              a store was unreachable or busy: retried with backoff
        ├── StoreUnavailable        PostgreSQL/SQLite or Qdrant did not answer, or refused a write
        ├── EmbeddedQdrantBusy      another process holds the embedded Qdrant folder
        ├── LockTimeout             another run of the catalog held its lock for too long
        └── ModelSwitched           the live/standby models changed after the run planned

`SyncFailed` wraps whatever ended a sync after the protocol cleaned up; it is transient or terminal
as its cause is. Foreign errors (psycopg, SQLAlchemy, qdrant-client, httpx, filelock) are
translated where the stores are called (`translate`); everything else is a bug and is treated as
transient once (Dagster's retry policy), then reported.

`one_line` is the only place an error becomes the single line users see: first line, class name
without module path, secrets redacted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable


class DqError(Exception):
    """Base of every error the package raises on purpose."""

    transient = False


class TerminalError(DqError):
    """Fails the same way every time: fix the input, the configuration or the deployment."""

    transient = False


class TransientError(DqError):
    """A store was unreachable or busy; the same run may succeed later."""

    transient = True


class RefusedInput(TerminalError):
    """Input the format's own tool would refuse; nothing was written (I6)."""


class ConfigurationError(TerminalError, ValueError):
    """A setting has a value that cannot work."""


class ModelUnavailable(ConfigurationError):
    """A model the record needs (the live one, or the standby being built) is not loadable here."""


class LockLost(TerminalError):
    """The catalog's lock (its database session) ended during the run; another run may own it now."""


class StaleSource(TerminalError):
    """The entries were parsed from a version of the file that is no longer on disk."""


class UnknownEntries(TerminalError, LookupError):
    pass


class StoreUnavailable(TransientError):
    """PostgreSQL/SQLite or Qdrant did not answer or did not acknowledge a write."""


class EmbeddedQdrantBusy(TransientError):
    """Another process holds the embedded Qdrant folder."""


class LockTimeout(TransientError):
    """Another run of the catalog held its lock longer than the configured wait."""


class ModelSwitched(TransientError):
    """The live or standby model changed after the run planned: nothing of it committed; the next
    run plans with the models as they are now."""


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may help; unknown errors count as transient (a retry is cheap and safe)."""
    for link in _chain(exc):
        if isinstance(link, DqError):
            return link.transient
    return not isinstance(exc, (ValueError, TypeError, KeyError, AttributeError, NotImplementedError))


def error_kind(exc: BaseException) -> str:
    """A short stable name for metrics, alerts and run metadata: the first DqError class in the chain."""
    for link in _chain(exc):
        if isinstance(link, DqError):
            return type(link).__name__
    return "transient" if is_transient(exc) else "terminal"


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def translate(exc: BaseException, where: str) -> DqError:
    """A store's foreign error as this package's: connection trouble is transient, the rest terminal."""
    if isinstance(exc, DqError):
        return exc
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    transient_names = ("OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError", "ConnectError",
                       "ConnectTimeout", "ReadTimeout", "WriteTimeout", "RemoteProtocolError", "ResponseHandlingException",
                       "UnexpectedResponse", "ConnectionError", "Timeout", "RpcError")
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or name in transient_names or module.startswith(("httpx", "httpcore", "grpc")):
        return StoreUnavailable(f"{where}: {one_line(exc)}")
    return TerminalError(f"{where}: {one_line(exc)}")


# Secrets a message may carry: URL passwords always, and the values of the variables that
# `settings.masked_env_names()` lists when set (the secret settings, declared once there).
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_QUERY_SECRET = re.compile(r"([?&](?:password|sslpassword|passfile|api[-_]?key|token)=)[^&\s]+", re.IGNORECASE)


def _secret_env() -> tuple[str, ...]:
    # Imported when first needed: settings imports this module.
    from .settings import masked_env_names

    return masked_env_names()


def __getattr__(name: str) -> object:
    """`SECRET_ENV`, the masked variables, derived from the settings' declarations."""
    if name == "SECRET_ENV":
        return _secret_env()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def redact(message: str, secrets: Iterable[str] = ()) -> str:
    """Mask URL passwords and any known secret value in a message."""
    message = _URL_PASSWORD.sub(r"\1***@", message)
    message = _QUERY_SECRET.sub(r"\1***", message)
    values = [os.environ.get(name) for name in _secret_env()] + list(secrets)
    for value in values:
        if value and len(value) >= 4:
            message = message.replace(value, "***")
    return message


def one_line(exc: BaseException) -> str:
    """`ClassName: first line of the message`, redacted; the one line users see."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    name = type(exc).__name__
    if isinstance(exc, DqError) and first:
        return redact(first)
    return redact(f"{name}: {first}" if first else name)
