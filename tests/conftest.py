import os

import pytest

from gradconf.loader import parse_case

collect_ignore = ["malformed"]  # the malformed corpus is data for test_loader.py, not cases to collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_case(**data):
    """A validated Case from keyword fields, as if read from a file."""
    return parse_case(data, "<test>", {})


@pytest.fixture
def root():
    return ROOT

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _isolated_adapter_registry():
    """Adapters loaded with --adapter register their names process-wide (as a CLI run needs); tests
    that run the CLI in-process must not leak them into later tests."""
    from gradconf import registry
    saved = dict(registry._LOADED)
    yield
    registry._LOADED.clear()
    registry._LOADED.update(saved)
