"""`photocheck serve`: the web review, served by waitress."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import DbOption, console, err_console, fail, warn_data_dir
from photocheck.config import resolve_db_url


def is_loopback(host: str) -> bool:
    if host.strip("[]").casefold() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option("--host", metavar="ADDR", help="Address to listen on. The default is "
                                      "reachable from this machine only; anything else exposes the review "
                                      "(photos of children) to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="N", min=0, max=65535,
                                      help="TCP port (0: any free port; the address is printed).")] = 8765,
    redacted_dir: Annotated[Path | None, typer.Option("--redacted-dir", metavar="DIR",
                                                      help="Where confirmed redacted copies are written "
                                                           "(default: redacted/ in the photocheck data folder).",
                                                      show_default=False)] = None,
    threads: Annotated[int, typer.Option("--threads", metavar="N", min=1, max=64,
                                         help="Requests served at once.")] = 4,
    db: DbOption = None,
) -> None:
    """Serve the web review: scans, queues, contact sheets, sign-off, redaction, audit log.

    Reviewers sign in with accounts made by `photocheck user add NAME`; the signed-in name is
    who signs off, with the same rules as `photocheck review sign`. Stop with Ctrl-C.
    """
    from waitress import create_server

    from photocheck.db.session import DatabaseError
    from photocheck.users import list_users
    from photocheck.web import create_app
    from photocheck.web.app import LOOPBACK_HOSTS

    local = is_loopback(host)
    warn_data_dir()
    try:
        # On loopback, only loopback Host headers: a DNS-rebinding web page cannot talk to it.
        trusted = [*LOOPBACK_HOSTS, host.strip("[]")] if local else None
        app = create_app(resolve_db_url(db), redact_dir=redacted_dir, trusted_hosts=trusted)
    except DatabaseError as exc:
        fail(str(exc))
    if not list_users(app.extensions["photocheck_db"]):
        err_console.print("[yellow]warning:[/] no reviewer accounts yet: add one with `photocheck user add NAME`",
                          highlight=False)
    try:
        server = create_server(app, host=host, port=port, threads=threads, ident="photocheck")
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{getattr(server, 'effective_port', port)}/"
    console.print(f"photocheck web review on {escape(url)}", highlight=False, soft_wrap=True)
    if local:
        console.print(f"Reachable from this machine only (bound to {escape(host)}). Ctrl-C stops it.",
                      highlight=False)
    else:
        err_console.print(
            f"[bold red]WARNING: listening on {escape(host)}, which is NOT a loopback address.[/] Anyone who can "
            "reach this machine on the network can try to sign in, and pages and photos travel unencrypted "
            "(plain HTTP). Use the default --host 127.0.0.1 unless a TLS reverse proxy is in front of it.",
            highlight=False)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
