"""URLs of the services a run talks to (the study database, MLflow): the driver they need, and
their secrets kept out of every file.

A password given in a URL (`--storage postgresql://user:pw@host/db`) is used by this process
but never written: what a run records (search_run.json, Tune's state, tracking settings) holds
`mask_url(url)`, `postgresql://user:***@host/db`. A later command that reads a record back
(`search resume`, `best`, `status`, `stages`, `sync`) gets the secret again from, in order:
the full URL this process was given (`remember`); the password file the user names
(`--storage-password-file`, or $SEARCH_STORAGE_PASSWORD_FILE); $SEARCH_STORAGE or
$MLFLOW_TRACKING_URI when it is the same URL with its password; else the URL without a password,
for which PostgreSQL's client library reads $PGPASSWORD or ~/.pgpass itself.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from search.errors import UserError

MASK = "***"
ENV_PASSWORD_FILE = "SEARCH_STORAGE_PASSWORD_FILE"
ENV_URLS = ("SEARCH_STORAGE", "MLFLOW_TRACKING_URI")  # full URLs a user may keep in the env
MAX_PASSWORD_FILE = 4096
_SECRET_QUERY = re.compile(r"(?i)((?:^|[?&;])(?:password|passwd|pwd|token|secret)=)([^&;#]*)")
_full: dict[str, str] = {}  # masked → full, for the URLs this process was given


def with_driver(url: str) -> str:
    """A bare postgresql:// with the PostgreSQL driver that is installed: SQLAlchemy 2.1 means
    psycopg 3 by it, and psycopg2 may be all there is. The one place this rewrite happens."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _userinfo(url: str) -> tuple[Any, str, str | None] | None:
    """(split url, user, password) of a URL with credentials, else None."""
    if "://" not in url or "@" not in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    cred, at, _ = parts.netloc.rpartition("@")
    if not at:
        return None
    user, colon, password = cred.partition(":")
    return parts, user, password if colon else None


def _with_password(url: str, password: str | None) -> str:
    info = _userinfo(url)
    if info is None:
        return url
    parts, user, _ = info
    host = parts.netloc.rpartition("@")[2]
    cred = user if password is None else f"{user}:{password}"
    return urlunsplit(parts._replace(netloc=f"{cred}@{host}" if cred else host))


def has_secret(url: str) -> bool:
    info = _userinfo(url)
    return bool(info and info[2] and info[2] != MASK) or bool(
        _SECRET_QUERY.search(url.partition("?")[2]) and mask_url(url) != url)


def mask_url(url: str) -> str:
    """`url` with its password (and any password=/token= query value) replaced by ***."""
    if not isinstance(url, str) or "://" not in url:
        return url
    info = _userinfo(url)
    if info and info[2] is not None:
        url = _with_password(url, MASK)
    if "?" in url:
        head, _, query = url.partition("?")
        url = head + "?" + _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, query)
    return url


def secret_free(value: Any) -> Any:
    """A copy of a record (dicts, lists, strings) with every URL in it masked: what is written
    to a run folder, handed to Ray, or logged to MLflow."""
    if isinstance(value, dict):
        return {k: secret_free(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(secret_free(v) for v in value)
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def remember(url: str) -> str:
    """Keep a full URL for this process; returns the masked form to pass around and record."""
    masked = mask_url(url)
    if masked != url:
        _full[masked] = url
    return masked


def use_password_file(path: str | None, where: str = "--storage-password-file") -> None:
    """Take the database password from this file (its first line) for what follows."""
    if path is None:
        return
    read_password_file(path, where)  # a bad file is said now, before anything runs
    os.environ[ENV_PASSWORD_FILE] = str(Path(path).expanduser().absolute())


def read_password_file(path: str, where: str = ENV_PASSWORD_FILE) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        kind = "does not exist" if not p.exists() else "is not a regular file"
        raise UserError(f"{where} {path}: {kind}")
    try:
        if p.stat().st_size > MAX_PASSWORD_FILE:
            raise UserError(f"{where} {path}: larger than {MAX_PASSWORD_FILE} bytes; it must "
                            "hold the password on its first line")
        text = p.read_text(encoding="utf-8")
    except PermissionError:
        raise UserError(f"{where} {path}: permission denied (cannot read it)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{where} {path}: cannot read it ({type(err).__name__})") from None
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise UserError(f"{where} {path}: empty; it must hold the password on its first line")
    return password


def reveal(url: str) -> str:
    """The URL to connect with: a recorded (masked) URL with its secret back (see above)."""
    if not isinstance(url, str):
        return url
    if url in _full:
        return _full[url]
    info = _userinfo(url)
    if info is None or (info[2] not in (None, MASK)):
        return url
    file = os.environ.get(ENV_PASSWORD_FILE)
    if file and url.split(":", 1)[0].startswith("postgresql"):
        return _with_password(url, read_password_file(file))
    if info[2] == MASK:
        for name in ENV_URLS:
            given = (os.environ.get(name) or "").strip()
            if given and mask_url(with_driver(given)) == with_driver(url):
                return with_driver(given)
        return _with_password(url, None)  # libpq: $PGPASSWORD or ~/.pgpass
    return url
