"""Shared pytest configuration."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "network: downloads from a package registry; runs only when RUN_NETWORK_TESTS=1")
