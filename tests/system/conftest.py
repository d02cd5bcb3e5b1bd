"""The system suite's fixtures: a tiny model checkpoint and one topology (Redis, two API replicas) per module.

Tests may kill a replica or restart Redis; `topology` brings everything back to healthy before each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infinitygan.checkpoint import save_generator
from infinitygan.generator import build_generator
from tests.service.conftest import metric
from tests.system.topology import Topology


@pytest.fixture(scope="session")
def system_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_generator(build_generator("tiny", init_seed=0), tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def running_topology(tmp_path_factory: pytest.TempPathFactory, system_model: Path) -> Iterator[Topology]:
    # The API replicas run no jobs (separate workers do, as in docker-compose.yml); short jobs and leases keep the
    # worker test quick: a dead worker's job is requeued after two reaper scans a lease apart.
    settings = {"outpaint_worker": "false", "outpaint_steps": "30", "outpaint_lease_s": "1"}
    with Topology(tmp_path_factory.mktemp("topology"), system_model, **settings) as topology:
        yield topology


@pytest.fixture
def topology(running_topology: Topology, request: pytest.FixtureRequest) -> Iterator[Topology]:
    if running_topology.redis.process is None or running_topology.redis.process.poll() is not None:
        running_topology.redis.start()
    for replica in running_topology.replicas:
        running_topology.restart_replica(replica)
    yield running_topology
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(running_topology.logs())  # shown under "Captured stdout teardown"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # Remember each phase's report on the item so the fixture above can print the services' logs on failure.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def native_renders(base_urls: list[str]) -> float:
    """Model renders summed over replicas (counters restart at 0 with a process: compare within one lifetime)."""
    total = 0.0
    for url in base_urls:
        with httpx.Client(base_url=url, timeout=30) as client:
            total += metric(client, "tile_renders_total", kind="native")
    return total
