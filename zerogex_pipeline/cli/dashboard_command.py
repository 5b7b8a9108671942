"""``zerogex dashboard``: serve the live GEX screen and the read-only levels API (uvicorn).

Binds to 127.0.0.1 by default. ``--expose`` (all interfaces) or a non-loopback ``--host`` requires the
``ZEROGEX_DASHBOARD_TOKEN`` environment variable (see :mod:`zerogex_pipeline.dashboard.security`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from zerogex_pipeline.dashboard.security import TOKEN_ENV, configured_token, is_loopback
from zerogex_pipeline.settings import load_settings

DEFAULT_PORT = 8050


def _handle(args: argparse.Namespace) -> int:
    import uvicorn

    from zerogex_pipeline.dashboard.app import create_app

    settings = load_settings()
    host = "0.0.0.0" if args.expose else args.host
    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: expected a TCP port between 1 and 65535")
    if not 0.1 <= args.poll_seconds <= 60:
        raise ValueError(f"--poll-seconds {args.poll_seconds}: expected a number between 0.1 and 60")
    token = configured_token(host, os.environ)
    app = create_app(settings, token=token, poll_s=args.poll_seconds, loopback_only=is_loopback(host))
    logging.basicConfig(level=logging.INFO if args.access_log else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = uvicorn.Config(app, host=host, port=args.port, access_log=False, log_level="warning",
                            timeout_graceful_shutdown=2, server_header=False)
    server = _Server(config, app.state.hub)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    pages = ", ".join(f"http://{shown}:{args.port}/{u.name.lower()}" for u in settings.underlyings)
    store = app.state.service.store
    print(f"zerogex dashboard: {pages} (API http://{shown}:{args.port}/docs); store {store.kind} {store.location}"
          + (f"; token required ({TOKEN_ENV})" if token else ""), file=sys.stderr, flush=True)
    server.run()
    store.close()
    return 0


class _Server:
    """uvicorn's server whose exit also ends the open event streams at once (they would hold the shutdown)."""

    def __init__(self, config: Any, hub: Any) -> None:
        import uvicorn

        hub_ref = hub

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                hub_ref.closing.set()
                super().handle_exit(sig, frame)

        self._server = Server(config)

    def run(self) -> None:
        self._server.run()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``dashboard`` command."""
    p = sub.add_parser("dashboard", help="serve the live GEX screen and the read-only levels API")
    p.add_argument("--host", default="127.0.0.1",
                   help=f"address to bind (default 127.0.0.1; a non-loopback address requires {TOKEN_ENV})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--expose", action="store_true",
                   help=f"bind all interfaces (0.0.0.0); requires {TOKEN_ENV} (at least 16 characters)")
    p.add_argument("--poll-seconds", type=float, default=1.0,
                   help="seconds between two looks at the store for changes while a page is open (default 1)")
    p.add_argument("--access-log", action="store_true", help="log each request (method, path, status, ms)")
    p.set_defaults(handler=_handle)
