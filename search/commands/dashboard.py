"""`search dashboard [NAME]`: optuna-dashboard on a search's study database.

The dashboard is served from this process (optuna-dashboard's WSGI app on a threading
wsgiref server, as its own command does), so it ends with the command. The storage is handed to
it as an opened storage object: a PostgreSQL password never appears on a command line, in
a message or in a file (search/urls.py).
"""
from __future__ import annotations

import argparse
import sys

from search.commands import add_search_arguments
from search.commands.services import add_listen_arguments

NAME = "dashboard"
HELP = "start optuna-dashboard on a search's study database and print its URL"
PORT = 8080


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_search_arguments(parser, optional=True)
    add_listen_arguments(parser, PORT)


def run(args: argparse.Namespace) -> int:
    from search.studies import study as studies
    from search.errors import UserError
    from search.commands.services import Stopped, base_url, check_port, stop_on_signals

    try:
        import optuna_dashboard
    except ImportError:
        raise UserError("optuna-dashboard is not installed; pip install optuna-dashboard") \
            from None
    name, url = _study_of(args)
    check_port(args.host, args.port)
    storage = studies.open_storage(url)
    study_id = None
    if name is not None:
        name = studies.current_name(storage, name)
        if name not in studies.study_names(storage):
            raise UserError(f"{studies.shown(url)}: no study {name!r} there; studies: "
                            f"{', '.join(studies.study_names(storage)) or 'none'}")
        study_id = storage.get_study_id_from_name(name)
    server = _server(args.host, args.port, optuna_dashboard.wsgi(storage))
    home = base_url(args.host, args.port)
    print(f"optuna-dashboard: {home}/dashboard  (study database {studies.shown(url)}; "
          "Ctrl-C stops it)")
    if study_id is not None:
        print(f"  study {name}: {home}/dashboard/studies/{study_id}")
    sys.stdout.flush()
    try:
        with stop_on_signals():
            server.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, Stopped):
        pass
    finally:
        server.server_close()
    return 0


def _study_of(args: argparse.Namespace) -> tuple[str | None, str]:
    """(study name or None for every study of the storage, storage URL)."""
    import os

    from search.studies import study as studies
    from search.errors import UserError
    from search.lifecycle.runs import locate

    if args.name or args.output:  # a folder of runs names its study
        name, _, url = locate(args.name or args.output, args.output if args.name else None,
                              args.storage)
        return name, url
    if args.storage or os.environ.get(studies.ENV_STORAGE):
        return None, studies.storage_url(args.storage, os.getcwd())
    raise UserError("name a search: NAME (its ./runs/NAME folder), its space file, --output DIR "
                    "or --storage URL")


def _server(host: str, port: int, app):
    """A threading WSGI server bound now (a port taken meanwhile is said as a UserError)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from search.errors import UserError

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a browser's open request does not hold the exit

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args) -> None:  # no line per request
            pass

    try:
        return make_server(host, port, app, server_class=Server, handler_class=Quiet)
    except OSError as err:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") \
            from None
