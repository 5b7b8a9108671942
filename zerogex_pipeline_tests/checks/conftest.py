"""The storage tests' PostgreSQL fixtures (throwaway cluster, fresh database per test), reused here."""

from zerogex_pipeline_tests.storage.conftest import pg_server, pg_url

__all__ = ["pg_server", "pg_url"]
