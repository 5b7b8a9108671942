"""Who may read the dashboard: loopback by default; anything else needs the access token.

The server binds to ``127.0.0.1`` unless told otherwise. Binding to any other address (``--expose`` or
``--host``) requires ``ZEROGEX_DASHBOARD_TOKEN`` (at least :data:`MIN_TOKEN_CHARS` characters), read from the
environment only (a command-line argument would show in ``ps``). When a token is configured every request must
carry it, as ``Authorization: Bearer <token>``, as the ``zerogex_dashboard_token`` cookie, or once as
``?token=<token>`` on a page address (the server then sets the cookie and redirects to the address without it,
so the token leaves the address bar and the history). Tokens are compared as SHA-256 digests with
:func:`hmac.compare_digest` (constant time, length not leaked). The token never appears in a log line, an
error or a page.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping

TOKEN_ENV = "ZEROGEX_DASHBOARD_TOKEN"
COOKIE_NAME = "zerogex_dashboard_token"
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class AccessSettingsError(ValueError):
    """The host/token combination is refused; the message names the variable or option."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def configured_token(host: str, environ: Mapping[str, str]) -> str | None:
    """The token the server must require for ``host`` (``None``: loopback and no token set).

    Raises:
        AccessSettingsError: a non-loopback host without a token, or a token that is too short.
    """
    token = environ.get(TOKEN_ENV, "").strip() or None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise AccessSettingsError(f"{TOKEN_ENV}: expected at least {MIN_TOKEN_CHARS} characters "
                                  f"(got {len(token)}); e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'")
    if token is None and not is_loopback(host):
        raise AccessSettingsError(f"--host {host}: serving beyond this machine requires {TOKEN_ENV} "
                                  f"(at least {MIN_TOKEN_CHARS} characters) in the environment")
    return token


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class TokenGuard:
    """Checks a presented token against the configured one (always true when none is configured)."""

    def __init__(self, token: str | None) -> None:
        self._digest = None if token is None else _digest(token)

    @property
    def enabled(self) -> bool:
        """Whether requests must carry the token."""
        return self._digest is not None

    def matches(self, presented: str | None) -> bool:
        """Constant-time comparison of ``presented`` with the token (``False`` for ``None``)."""
        if self._digest is None:
            return True
        if presented is None:
            return False
        return hmac.compare_digest(_digest(presented), self._digest)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
