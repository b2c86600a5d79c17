"""Fixtures of the SDK's unit tests (the fakes are in sdk_fakes.py)."""
import pytest
from sdk_fakes import FakeLatchkey, Signer


@pytest.fixture
def signer():
    return Signer()


@pytest.fixture
def fake():
    server = FakeLatchkey()
    yield server
    server.stop()
