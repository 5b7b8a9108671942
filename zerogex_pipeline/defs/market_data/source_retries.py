"""Step-level retries of the assets that call the market-data source, for transient failures only.

The TradeStation client already waits out 429s (``X-RateLimit-Reset``) and retries 5xx and connection
errors a bounded number of times. When that is exhausted, the step asks Dagster for a later retry
(``RetryRequested``: the step re-runs in the same run after ``SECONDS_TO_WAIT``, leaving the
concurrency-pool slot to other runs meanwhile) instead of failing the run. Credential, request and
programming errors are not retried: another attempt cannot fix them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import requests

from zerogex_pipeline.tradestation.errors import ApiError, RateLimitError, StreamError

MAX_RETRIES = 2
SECONDS_TO_WAIT = 60


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another attempt later: rate limit, 5xx, stream or connection failure."""
    if isinstance(exc, (RateLimitError, StreamError, requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(exc, ApiError) and exc.status >= 500


@contextmanager
def retry_transient_source_errors(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> Iterator[None]:
    """Turn a transient source failure into ``dg.RetryRequested`` (at most ``MAX_RETRIES`` times)."""
    try:
        yield
    except Exception as exc:
        if not is_transient(exc):
            raise
        context.log.warning(f"transient market-data failure, step retry requested in {SECONDS_TO_WAIT}s: {exc}")
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=SECONDS_TO_WAIT) from exc
