"""OAuth2 refresh-token grant with an access-token cache shared by every process on the machine.

The cache (``<data_dir>/tradestation/token-<client hash>.json``, guarded by a file lock) holds the
current access token, its expiry (epoch seconds) and the current refresh token. With rotating refresh
tokens, the refresh that receives a new refresh token writes it atomically (temp file + ``os.replace``)
before releasing the lock, so another process never refreshes with a token already rotated away.
Secrets are never logged or put into exception messages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from filelock import FileLock

from zerogex_pipeline.tradestation.config import TradeStationConfig
from zerogex_pipeline.tradestation.errors import AuthError

log = logging.getLogger(__name__)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (readers see the old or the new file, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TokenManager:
    """Hands out a valid access token, refreshing it ``token_skew_s`` seconds before it expires."""

    def __init__(self, config: TradeStationConfig, session: requests.Session | None = None) -> None:
        self._config = config
        self._session = session or requests.Session()
        client = _digest(config.client_id + "|" + config.auth_url)
        self.cache_path = config.cache_dir / f"token-{client}.json"
        self._lock = FileLock(str(config.cache_dir / f"token-{client}.lock"), timeout=60)
        self._thread_lock = threading.Lock()
        self._access_token: str | None = None
        self._expires_at = 0.0
        self.refresh_count = 0
        """Refresh grants this manager performed (not counting other processes)."""

    def __repr__(self) -> str:
        return f"TokenManager(client_id={self._config.client_id!r}, cache={str(self.cache_path)!r})"

    def _read_cache(self) -> dict[str, Any]:
        try:
            data = json.loads(self.cache_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def _fresh(self, expires_at: float) -> bool:
        return time.time() < expires_at - self._config.token_skew_s

    def access_token(self) -> str:
        """A valid access token (from memory, the shared cache, or a new refresh grant)."""
        with self._thread_lock:
            if self._access_token and self._fresh(self._expires_at):
                return self._access_token
            return self._refresh_locked(failed_token=None)

    def force_refresh(self, failed_token: str) -> str:
        """A token other than ``failed_token`` (which got a 401): another process's, or a new grant."""
        with self._thread_lock:
            if self._access_token and self._access_token != failed_token and self._fresh(self._expires_at):
                return self._access_token
            return self._refresh_locked(failed_token=failed_token)

    def _refresh_locked(self, failed_token: str | None) -> str:
        self._config.cache_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            cache = self._read_cache()
            seed = _digest(self._config.refresh_token)
            if cache.get("seed") != seed:
                cache = {"seed": seed}  # a new refresh token was configured: start over from it
            token = cache.get("access_token")
            expires_at = float(cache.get("expires_at", 0.0))
            if token and token != failed_token and self._fresh(expires_at):
                self._access_token, self._expires_at = str(token), expires_at
                return str(token)
            refresh_token = str(cache.get("refresh_token") or self._config.refresh_token)
            body = self._grant(refresh_token)
            access = body.get("access_token")
            if not isinstance(access, str) or not access:
                raise AuthError(f"{self._config.auth_url}/oauth/token: response without an access_token")
            try:
                lifetime = float(body.get("expires_in", 1200))
            except (TypeError, ValueError):
                lifetime = 1200.0
            expires_at = time.time() + lifetime
            new_refresh = body.get("refresh_token")
            cache.update({
                "access_token": access,
                "expires_at": expires_at,
                "refresh_token": new_refresh if isinstance(new_refresh, str) and new_refresh else refresh_token,
            })
            atomic_write_json(self.cache_path, cache)
            self.refresh_count += 1
            log.debug("tradestation: access token refreshed (expires in %.0f s%s)", lifetime,
                     ", refresh token rotated" if new_refresh else "")
            self._access_token, self._expires_at = access, expires_at
            return access

    def _grant(self, refresh_token: str) -> dict[str, Any]:
        url = f"{self._config.auth_url}/oauth/token"
        form = {"grant_type": "refresh_token", "client_id": self._config.client_id,
                "client_secret": self._config.client_secret, "refresh_token": refresh_token}
        last_error = ""
        for attempt in range(self._config.max_retries + 1):
            try:
                resp = self._session.post(
                    url, data=form, timeout=(self._config.connect_timeout_s, self._config.read_timeout_s)
                )
            except requests.RequestException as exc:
                last_error = type(exc).__name__
            else:
                if resp.status_code == 200:
                    try:
                        body = resp.json()
                    except ValueError:
                        raise AuthError(f"{url}: token response is not JSON") from None
                    if not isinstance(body, dict):
                        raise AuthError(f"{url}: token response is not a JSON object")
                    return body
                if resp.status_code in (400, 401, 403):
                    code = _auth_error(resp)
                    why = ": revoked, expired or already rotated away" if code == "invalid_grant" else ""
                    raise AuthError(
                        f"{url}: refresh token refused (HTTP {resp.status_code} {code}{why}); "
                        "re-authorize and set TRADESTATION_REFRESH_TOKEN to the new refresh token"
                    )
                last_error = f"HTTP {resp.status_code}"
            time.sleep(min(self._config.backoff_max_s, self._config.backoff_base_s * 2**attempt))
        raise AuthError(f"{url}: token refresh failed after {self._config.max_retries + 1} attempts ({last_error})")


def _auth_error(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    code = str(body.get("error", "")) if isinstance(body, dict) else ""
    return code if re.fullmatch(r"[A-Za-z_]{1,40}", code) else ""  # an OAuth error code, never echoed text
