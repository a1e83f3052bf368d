"""pytest-benchmark options for benchmarks/: `python -m pytest benchmarks/ --benchmark-only [--bench-threads N]`."""
import pytest


def pytest_addoption(parser):
    parser.addoption("--bench-threads", type=int, default=2, help="threads for every engine (default 2)")


@pytest.fixture(scope="session")
def bench_threads(request):
    return request.config.getoption("--bench-threads")
