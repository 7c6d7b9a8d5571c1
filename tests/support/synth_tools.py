"""The autouse fixture of the tests that hear synthesized speech (``tests.support.synth``):
espeak-ng and sox are installable, so their absence fails those tests rather than skipping them.
A test module takes it with ``from tests.support.synth_tools import needs_synthesis_tools``."""

from __future__ import annotations

import pytest

from tests.support import synth


@pytest.fixture(autouse=True)
def needs_synthesis_tools() -> None:
    """espeak-ng and sox make the speech these tests hear; both are installable, so their
    absence fails the tests rather than skipping them."""
    missing = synth.available()
    if missing is not None:
        pytest.fail(missing)
