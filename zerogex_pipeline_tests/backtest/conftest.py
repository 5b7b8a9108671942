"""The real-PostgreSQL fixtures of the storage tests (``pg_server``, ``pg_url``), reused here."""

from zerogex_pipeline_tests.storage.conftest import pg_server, pg_url

__all__ = ["pg_server", "pg_url"]
