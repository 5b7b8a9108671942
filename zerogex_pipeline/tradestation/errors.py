"""Errors raised by the TradeStation client. Messages never contain secrets."""

from __future__ import annotations


class TradeStationError(RuntimeError):
    """Base class of every TradeStation client error."""


class CredentialsError(TradeStationError):
    """A credential setting is missing or malformed; the message names the variables."""


class AuthError(TradeStationError):
    """The auth host refused the refresh token (re-authorization needed) or could not be reached."""


class ApiError(TradeStationError):
    """An HTTP error from the API with its ``{"Error","Message"}`` body.

    Attributes:
        status: HTTP status code.
        error: the ``Error`` title (``BadRequest``, ``NotFound``, ...), or ``""`` when absent.
        api_message: the ``Message`` text, or ``""``.
        path: request path (no query string, no credentials).
    """

    def __init__(self, status: int, error: str, api_message: str, path: str) -> None:
        self.status = status
        self.error = error
        self.api_message = api_message
        self.path = path
        super().__init__(f"{path}: HTTP {status} {error}: {api_message}".rstrip(": "))


class RateLimitError(ApiError):
    """HTTP 429 persisted after the configured number of waits."""


class StreamError(TradeStationError):
    """A stream failed for good (in-band error other than GoAway, or reconnect attempts exhausted)."""
