"""The simulated history the tests use starts in 2024: their settings take this first partition date
(``ZEROGEX_FIRST_DATE``; the product default starts in 2025)."""

import datetime as dt

TEST_FIRST_DATE = dt.date(2024, 1, 2)
TEST_FIRST_DATE_ENV = {"ZEROGEX_FIRST_DATE": TEST_FIRST_DATE.isoformat()}
