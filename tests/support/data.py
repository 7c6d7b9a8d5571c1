"""Where the recorded data the tests replay lives: ``tests/data/``, inside the repository."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
# Real Asterisk 22 AGI/AMI traffic, byte for byte (its README lists what was seen on the wire).
CAPTURES = DATA / "asterisk-captures"
# The MixMonitor recording of the answered call (8 kHz 16-bit, two directions interleaved).
CAPTURED_WAV = CAPTURES / "answered" / "1795593159.8.wav"
# The project's own Open311 GeoReport v2 JSON Schemas, written from the specification.
OPEN311_SCHEMAS = DATA / "open311"
