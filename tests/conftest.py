import os

import pytest

from harness.loader import parse_case

collect_ignore = ["malformed"]  # the malformed corpus is data for test_loader.py, not cases to collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_case(**data):
    """A validated Case from keyword fields, as if read from a file."""
    return parse_case(data, "<test>", {})


@pytest.fixture
def root():
    return ROOT

pytest_plugins = ["pytester"]
