"""The dashboard's web application: the live screen (one page per underlying) and the read-only levels API.

Addresses (``{u}`` is an underlying name, any case: ``spy``, ``SPX``):

- ``/{u}``: the live screen; ``/`` redirects to the first served underlying;
- ``/api/v1/...``: the JSON API (see ``/docs``, served offline, and ``/api/v1/openapi.json``);
- ``/api/v1/{u}/events``: Server-Sent Events that move the page (:mod:`zerogex_pipeline.dashboard.events`);
- ``/static/...``: the page's script and style, plotly.js from the ``plotly`` wheel, Swagger UI from the
  ``swagger-ui-py`` wheel (nothing is loaded from a CDN).

Only ``GET`` and ``HEAD`` are served (405 otherwise). Served on loopback only, requests whose ``Host`` is not a
loopback name are refused (a DNS-rebinding page cannot read it). With a token configured every request needs it
(:mod:`zerogex_pipeline.dashboard.security`). Every non-200 answer is ``{"error": "<one line>"}``: 400 for a
malformed or unknown parameter, 401 without the token, 404 for data that is not stored, 503 while the store
cannot be read. The access log has method, path, status and milliseconds, never the query string.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles

from zerogex_pipeline.dashboard import models
from zerogex_pipeline.dashboard.events import Hub
from zerogex_pipeline.dashboard.security import COOKIE_NAME, TokenGuard, bearer, is_loopback
from zerogex_pipeline.dashboard.service import (
    INTRADAY_SOURCES,
    LATEST_SOURCES,
    ApiError,
    BadRequestError,
    DashboardService,
    NotFoundError,
    parse_choice,
    parse_date,
    parse_fields,
    parse_instant,
)
from zerogex_pipeline.schemas import GEX_LEVELS, LIVE_LEVELS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.dashboard_queries import CacheMiss
from zerogex_pipeline.storage.table_slices import StorageError

LOG = logging.getLogger("zerogex.dashboard")
STATIC_DIR = Path(__file__).parent / "static"
API = "/api/v1"
DEFAULT_POLL_S = 1.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DATE_DOC = "Trading day YYYY-MM-DD (America/New_York); default: the newest stored day."
AT_DOC = ("The newest stored snapshot at or before this instant (ISO 8601; without an offset: America/New_York); "
          "default: the day's last snapshot.")
EXPIRATION_DOC = "all (default), 0dte (expiring on the day), or one expiration YYYY-MM-DD."
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": models.ErrorBody, "description": "Malformed or unknown parameter."},
    401: {"model": models.ErrorBody, "description": "Token required and missing or wrong."},
    404: {"model": models.ErrorBody, "description": "Nothing stored for the underlying, day, snapshot or expiration."},
    503: {"model": models.ErrorBody, "description": "The store cannot be read right now."},
}


def plotly_js() -> Path:
    """plotly.js as shipped in the ``plotly`` wheel (``plotly/package_data/plotly.min.js``)."""
    return Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))


def swagger_dir() -> Path:
    """Swagger UI's files as shipped in the ``swagger-ui-py`` wheel."""
    return Path(str(importlib.resources.files("swagger_ui") / "static"))


class Json(JSONResponse):
    """JSON without NaN (the service already turned them into null), compact, never cached."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("utf-8")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Json:
    """``{"error": message}`` with ``status``."""
    return Json({"error": message}, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


def _only(request: Request, *allowed: str) -> None:
    """Refuse query parameters the route does not take (a typo would otherwise be silently ignored)."""
    unknown = sorted({k for k in request.query_params if k not in allowed and k != "token"})
    if unknown:
        expected = ", ".join(allowed) if allowed else "none"
        raise BadRequestError(f"unknown parameter {unknown[0]!r}; this address takes: {expected}")


class Gate:
    """ASGI middleware: read-only methods, loopback ``Host``, the token, security headers, the access log."""

    def __init__(self, app: ASGIApp, guard: TokenGuard, loopback_only: bool) -> None:
        self.app = app
        self.guard = guard
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = message.setdefault("headers", [])
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                headers.append((b"x-frame-options", b"DENY"))
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            LOG.info("%s %s %d %.1f ms", scope["method"], scope["path"], status[0],
                     (time.perf_counter() - started) * 1e3)

    def _refusal(self, scope: Scope) -> Response | None:
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD"):
            return error(405, f"{method} {path}: this server is read-only (GET and HEAD only)",
                         {"Allow": "GET, HEAD"})
        headers = Headers(scope=scope)
        if self.loopback_only:
            host = headers.get("host", "")
            name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
            if not is_loopback(name):
                return error(400, "Host header: this server answers on loopback names only "
                                  "(localhost, 127.0.0.1, [::1]); start it with --expose to serve others")
        if not self.guard.enabled:
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        query_token = next((v for k, v in query if k == "token"), None)
        cookie = _cookie(headers.get("cookie", ""), COOKIE_NAME)
        if query_token is not None and not path.startswith(f"{API}/") and self.guard.matches(query_token):
            # a page address with ?token=: keep it in an HttpOnly cookie and drop it from the address
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            response = RedirectResponse(path + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(COOKIE_NAME, query_token, httponly=True, samesite="strict", path="/")
            return response
        for presented in (bearer(headers.get("authorization")), cookie, query_token):
            if presented is not None and self.guard.matches(presented):
                return None
        return error(401, "this dashboard needs its token: send 'Authorization: Bearer <token>', "
                          "or open a page once with ?token=<token>",
                     {"WWW-Authenticate": 'Bearer realm="zerogex"'})


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def create_app(settings: Settings, token: str | None = None, poll_s: float = DEFAULT_POLL_S,
               loopback_only: bool = True, service: DashboardService | None = None) -> FastAPI:
    """The dashboard application for ``settings``' store and underlyings.

    Args:
        token: the access token every request must carry (``None``: none required).
        poll_s: seconds between two looks at the store for changes while a page listens.
        loopback_only: refuse requests whose ``Host`` is not a loopback name (served on 127.0.0.1).
        service: the answers (built from ``settings`` when omitted).
    """
    service = service if service is not None else DashboardService(settings)
    app = FastAPI(
        title="ZeroGEX levels API",
        version="1",
        description=(
            "Read-only dealer gamma exposure (GEX) levels of the ZeroGEX pipeline: the newest levels (live engine "
            "or stored snapshots), one day's levels by snapshot, GEX by strike and by expiration of a snapshot, "
            "the gamma profile, the strike x time heatmap and the day's alerts.\n\n"
            "Convention: dealers long calls (+), short puts (-), net = call + put. GEX in USD per 1% move of the "
            "underlying; prices and strikes in USD; open interest in contracts; instants UTC ISO 8601; "
            "session_date is the America/New_York trading day. Errors: {\"error\": \"<one line>\"}."),
        docs_url=None, redoc_url=None, openapi_url=f"{API}/openapi.json",
    )
    app.state.service = service
    app.state.hub = Hub(service, poll_s)
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.add_middleware(Gate, guard=TokenGuard(token), loopback_only=loopback_only)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error(exc.status, exc.message)

    @app.exception_handler(StorageError)
    async def _storage_error(_: Request, exc: StorageError) -> Response:
        return error(503, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        return error(400, f"parameter {where or '?'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error(404, "no such address; the API is under /api/v1 (see /docs), pages are /<underlying>")
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        LOG.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__}); see the server log")

    def ok(payload: Any) -> Json:
        return Json(payload, headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ API
    @app.get(f"{API}/meta", response_model=models.Meta, responses=ERRORS, tags=["meta"])
    def meta(request: Request) -> Response:
        """Served underlyings, the store (no password), the sign convention and units."""
        _only(request)
        return ok(service.meta())

    @app.get(f"{API}/{{underlying}}/dates", response_model=models.Dates, responses=ERRORS, tags=["levels"])
    def dates(request: Request, underlying: str) -> Response:
        """Trading days with stored levels, newest first (the page's date picker)."""
        _only(request)
        return ok(service.dates(service.underlying(underlying)))

    @app.get(f"{API}/{{underlying}}/levels/latest", response_model=models.LatestLevels, responses=ERRORS,
             tags=["levels"])
    async def latest(request: Request, underlying: str, source: str | None = None) -> Response:
        """The newest levels: spot, net GEX, zero gamma, walls, max pain, their age and the regime.

        `source`: `auto` (default: the newer of the live engine's `live_levels` row and the newest stored
        `gex_levels` snapshot, the live one on a tie), `live`, or `stored` (the numbers of `zerogex levels --latest`).
        """
        _only(request, "source")
        u = service.underlying(underlying)
        which = parse_choice(source, "source", LATEST_SOURCES)
        try:  # unchanged embedded store: answered on the event loop from kept results (stat calls only)
            with service.store.cache_only():
                return ok(service.latest(u, which))
        except CacheMiss:
            return ok(await run_in_threadpool(service.latest, u, which))

    @app.get(f"{API}/{{underlying}}/levels/intraday", response_model=models.IntradayLevels, responses=ERRORS,
             tags=["levels"])
    def intraday(request: Request, underlying: str, date: str | None = None, source: str | None = None,
                 fields: str | None = None, since: str | None = None) -> Response:
        """One trading day's levels by snapshot, oldest first (`zerogex levels --intraday DATE`).

        `date`: YYYY-MM-DD (default: the newest stored day). `source`: `stored` (default, `gex_levels`) or `live`
        (`live_levels`, one row per engine interval). `fields`: comma-separated columns to return (default: all).
        `since`: only rows after this instant (ISO 8601).
        """
        _only(request, "date", "source", "fields", "since")
        u = service.underlying(underlying)
        src = parse_choice(source, "source", INTRADAY_SOURCES)
        return ok(service.intraday(u, parse_date(date, "date"), src,
                                   parse_fields(fields, LIVE_LEVELS if src == "live" else GEX_LEVELS),
                                   parse_instant(since, "since")))

    @app.get(f"{API}/{{underlying}}/gex/strikes", response_model=models.StrikeGex, responses=ERRORS, tags=["gex"])
    def strikes(request: Request, underlying: str, date: str | None = None, at: str | None = None,
                expiration: str | None = None) -> Response:
        """GEX by strike (call, put, net) and open interest of one snapshot, over all tracked expirations or one.

        `date`: """ + DATE_DOC + " `at`: " + AT_DOC + " `expiration`: " + EXPIRATION_DOC
        _only(request, "date", "at", "expiration")
        u = service.underlying(underlying)
        return ok(service.strikes(u, parse_date(date, "date"), parse_instant(at, "at"), expiration))

    @app.get(f"{API}/{{underlying}}/gex/expirations", response_model=models.ExpirationsGex, responses=ERRORS,
             tags=["gex"])
    def expirations(request: Request, underlying: str, date: str | None = None, at: str | None = None) -> Response:
        """GEX, open interest and max pain by expiration of one snapshot."""
        _only(request, "date", "at")
        u = service.underlying(underlying)
        return ok(service.expirations(u, parse_date(date, "date"), parse_instant(at, "at")))

    @app.get(f"{API}/{{underlying}}/gex/profile", response_model=models.GammaProfile, responses=ERRORS,
             tags=["gex"])
    def profile(request: Request, underlying: str, date: str | None = None, at: str | None = None,
                expiration: str | None = None) -> Response:
        """The gamma profile of one snapshot (net GEX if spot moved to each level) and zero gamma."""
        _only(request, "date", "at", "expiration")
        u = service.underlying(underlying)
        return ok(service.profile(u, parse_date(date, "date"), parse_instant(at, "at"), expiration))

    @app.get(f"{API}/{{underlying}}/gex/heatmap", response_model=models.Heatmap, responses=ERRORS, tags=["gex"])
    def heatmap(request: Request, underlying: str, date: str | None = None, expiration: str | None = None
                ) -> Response:
        """Net GEX by strike and snapshot through one day (all tracked expirations, 0dte, or one)."""
        _only(request, "date", "expiration")
        u = service.underlying(underlying)
        return ok(service.heatmap(u, parse_date(date, "date"), expiration))

    @app.get(f"{API}/{{underlying}}/alerts", response_model=models.Alerts, responses=ERRORS, tags=["alerts"])
    def alerts(request: Request, underlying: str, date: str | None = None) -> Response:
        """The day's stored alerts: zero-gamma crosses, call/put wall breaches, net-GEX sign changes."""
        _only(request, "date")
        u = service.underlying(underlying)
        return ok(service.alerts(u, parse_date(date, "date")))

    @app.get(f"{API}/{{underlying}}/events", tags=["push"], responses=ERRORS,
             response_class=StreamingResponse)
    async def events(request: Request, underlying: str) -> Response:
        """Server-Sent Events (`text/event-stream`): `hello`, then `levels`, `snapshot`, `alerts`, `status`."""
        _only(request)
        u = service.underlying(underlying)
        hello = {**service.meta(), "underlying": u.name}
        return StreamingResponse(app.state.hub.stream(u, hello), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------------ static files and docs
    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly() -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/static/app", StaticFiles(directory=STATIC_DIR), name="app")
    app.mount("/static/swagger", StaticFiles(directory=swagger_dir()), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(openapi_url=f"{API}/openapi.json", title="ZeroGEX levels API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse(f"/{settings.underlyings[0].name.lower()}", status_code=307)

    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @app.get("/{underlying}", include_in_schema=False)
    def screen(underlying: str) -> Response:
        try:
            u = service.underlying(underlying)
        except NotFoundError as exc:
            return HTMLResponse(f"<p>{_escape(exc.message)}</p>", status_code=404)
        html = page.replace("{{UNDERLYING}}", u.name)
        return HTMLResponse(html, headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'")})

    return app


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
