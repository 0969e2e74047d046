"""Where tracking data goes: the URI precedence, the default local store, the probe that fails
fast before any trial runs, and the line between "backend unreachable" and "request refused".

Precedence of the tracking URI (first one set wins):
    --tracking-uri flag  >  $MLFLOW_TRACKING_URI  >  the space's tracking.uri  >
    sqlite:///<absolute output dir>/mlflow.db (artifacts in <output dir>/mlartifacts)
The environment sits above the space file so that one space file can be pointed at a cluster's
tracking server without editing it, as MLflow users expect of MLFLOW_TRACKING_URI.
"""
from __future__ import annotations

import contextlib
import difflib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from search.errors import UserError
from search.urls import mask_url, remember, reveal, with_driver

ENV_URI = "MLFLOW_TRACKING_URI"
DB_NAME = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")
PROBE_TIMEOUT = 5.0

# MLflow's REST client retries a dead server for minutes by default (7 retries, backoff 2):
# the probe gives up at once, ordinary writes after a few seconds, then the spool takes over.
PROBE_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"}
WRITE_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              # set_terminated prints "View run ... at: <url>" for servers: not per trial
              "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}

# MLflow error codes that mean "the backend answered and refused this request": retrying the
# same write later cannot help, so such writes are reported and dropped, never spooled.
REFUSED = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
           "INVALID_STATE", "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED",
           "ENDPOINT_NOT_FOUND", "NOT_FOUND", "FEATURE_DISABLED"}


def default_uri(output_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(output_dir).absolute() / DB_NAME}"


def resolve_uri(flag: str | None, space_uri: str | None, output_dir: str | os.PathLike,
                env: dict[str, str] | None = None) -> str:
    """The tracking URI by the precedence above, normalised (see `normalise`)."""
    env = os.environ if env is None else env
    for where, uri in (("--tracking-uri", flag), (f"${ENV_URI}", env.get(ENV_URI)),
                       ("tracking.uri", space_uri)):
        if uri:
            return normalise(uri, where)
    return default_uri(output_dir)


def normalise(uri: str, where: str = "tracking uri") -> str:
    """Check the scheme; make SQLite paths absolute (trials and `search ui` run elsewhere); give
    a bare postgresql:// the PostgreSQL driver that is installed (SQLAlchemy 2.1 picks psycopg 3
    for it, and only psycopg2 may be present)."""
    uri = uri.strip()
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    base = scheme.split("+", 1)[0]
    if base not in SCHEMES:
        close = difflib.get_close_matches(base or uri, SCHEMES, n=1)
        hint = f" (did you mean {close[0] + '://'!r}?)" if close else ""
        if base == "postgres":
            hint = " (did you mean 'postgresql://'?)"
        raise UserError(f"{where}: unsupported tracking URI {redact(uri)!r}; expected a URI "
                        f"starting with one of {', '.join(s + ':' for s in SCHEMES)}{hint}")
    if base == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path or path == ":memory:":
            raise UserError(f"{where}: {uri!r} names no database file; use "
                            "sqlite:////absolute/path/mlflow.db")
        return f"{scheme}:///{Path(path).expanduser().absolute()}"
    return remember(with_driver(uri))  # recorded masked; reveal() at each client


def source_of(flag: str | None, space_uri: str | None,
              env: dict[str, str] | None = None) -> str:
    """Which setting gave the tracking URI (resolve_uri's precedence), for messages."""
    env = os.environ if env is None else env
    return "--tracking-uri" if flag else f"${ENV_URI}" if env.get(ENV_URI) else \
        "tracking.uri" if space_uri else "the default tracking uri"


def precheck(uri: str, where: str, output_dir: str | os.PathLike) -> None:
    """Before a run creates anything: a database or server that cannot be used, said now. An
    SQLite file outside the output folder needs an existing, writable folder (a typo must not
    leave a tree of new folders behind); servers and other databases are probed (probe)."""
    if uri.startswith("sqlite"):
        path = Path(uri.split(":///", 1)[1])
        output = Path(output_dir).absolute()
        if path.parent == output or output in path.parents:
            return  # the run creates the output folder itself
        if path.exists() and not path.is_file():
            raise UserError(f"{where} {uri}: {path} is not a file")
        if not path.parent.is_dir():
            raise UserError(f"{where} {uri}: the folder {path.parent} does not exist; create it "
                            "first or fix the path")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise UserError(f"{where} {uri}: permission denied (cannot write in {path.parent})")
        return
    probe(uri)


def is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def is_sql(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0].lower() in ("sqlite", "postgresql", "mysql",
                                                              "mssql")


def artifact_location(uri: str, output_dir: str | os.PathLike) -> str | None:
    """Where a new experiment's artifacts go. A tracking server decides for itself (it may proxy
    them with --serve-artifacts); with a database the driver writes them to the output folder."""
    if is_http(uri) or uri.startswith("databricks"):
        return None
    return (Path(output_dir).absolute() / ARTIFACT_DIR).as_uri()


def redact(uri: str) -> str:
    """The URI with any password replaced by ***, for messages."""
    return mask_url(uri)


@contextlib.contextmanager
def http_limits(settings: dict[str, str]) -> Iterator[None]:
    """MLflow reads its HTTP retry settings from the environment on every request: set them for
    the duration of one call, then put back what the user had."""
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def is_unreachable(err: BaseException) -> bool:
    """True when `err` says the backend could not be reached (spool and retry later), False when
    the backend answered and refused (retrying the same write cannot help)."""
    code = getattr(err, "error_code", None)
    if code is not None:
        if code in REFUSED:
            return False
        status = getattr(err, "get_http_status_code", lambda: 500)()
        return code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                        "DEADLINE_EXCEEDED", "IO_ERROR", "ABORTED") or status >= 500
    return isinstance(err, (OSError, ConnectionError, TimeoutError)) or \
        type(err).__module__.startswith(("sqlalchemy", "requests", "urllib3", "psycopg"))


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("(Background"):
            return line[:300]
    return type(err).__name__


def probe(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Fail in seconds, with a UserError, when the backend cannot be used; MLflow itself would
    retry an unreachable database for ~100 s and an unreachable server for minutes."""
    hint = "start it, or pass --tracking-uri (or unset $MLFLOW_TRACKING_URI) to use the " \
           "local default"
    uri = reveal(uri)
    if is_http(uri):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                response.read(64)
        except urllib.error.HTTPError as err:
            if err.code >= 500 or err.code == 404:
                raise UserError(f"tracking server {redact(uri)}: {url} answered HTTP "
                                f"{err.code}; is this an MLflow tracking server?") from None
        except (OSError, ValueError) as err:
            raise UserError(f"tracking server {redact(uri)}: unreachable ({_reason(err)}); "
                            f"{hint}") from None
        return
    if uri.startswith("sqlite"):
        folder = Path(uri.split(":///", 1)[1]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"tracking database {uri}: cannot create folder {folder} "
                            f"({_reason(err)})") from None
        if not os.access(folder, os.W_OK):
            raise UserError(f"tracking database {uri}: folder {folder} is not writable")
    if is_sql(uri):
        import sqlalchemy

        args = {"connect_timeout": max(1, int(timeout))} if "postgresql" in uri or "mysql" in \
            uri else {}
        try:
            engine = sqlalchemy.create_engine(uri, connect_args=args)
            with engine.connect() as conn:
                tables = set(sqlalchemy.inspect(conn).get_table_names())
            engine.dispose()
        except ImportError as err:
            raise UserError(f"tracking database {redact(uri)}: its driver is not installed "
                            f"({_reason(err)}); e.g. postgresql+psycopg2:// uses "
                            "psycopg2-binary") from None
        except Exception as err:  # SQLAlchemy wraps every driver's connection errors
            raise UserError(f"tracking database {redact(uri)}: cannot connect "
                            f"({_reason(err)}); {hint}") from None
        if "alembic_version" in tables and "experiments" not in tables:
            # Another application's migrated tables (Optuna's study database keeps an
            # alembic_version too): MLflow would add its tables, then fail on the revision.
            raise UserError(f"tracking database {redact(uri)}: holds another application's "
                            f"tables ({', '.join(sorted(tables)[:4])}, ...), e.g. the Optuna "
                            "study; give MLflow its own database or schema")


def open_client(uri: str, timeout: float = PROBE_TIMEOUT):
    """An MlflowClient on `uri`, after the probe; one read proves the store works (for a
    database: its tables exist or were created, and belong to MLflow)."""
    from mlflow import MlflowClient

    probe(uri, timeout)
    try:
        with http_limits(PROBE_HTTP):
            client = MlflowClient(tracking_uri=reveal(uri), registry_uri=reveal(uri))
            client.search_experiments(max_results=1)
    except Exception as err:
        extra = ""
        if any(w in str(err).lower() for w in ("alembic", "schema", "revision")):
            extra = "; MLflow and Optuna both keep an alembic_version table: give each its own " \
                    "database or schema"
        raise UserError(f"tracking backend {redact(uri)}: not usable ({_reason(err)}){extra}") \
            from None
    return client
