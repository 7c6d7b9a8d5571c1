"""``make bench`` writes docs/benchmarks.md; a partial run (``BENCH_ONLY``) must replace only the
sections it measured and keep every other section and kept block."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench import report


@pytest.fixture(autouse=True)
def _fresh_sections() -> None:
    report.SECTIONS.clear()


def test_a_partial_run_replaces_its_sections_and_keeps_the_rest(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    report.section("FastAGI", "old intro")
    report.note("fastagi old table")
    report.section("Live partials", "")
    report.note("live old table")
    report.write_markdown(doc, time.time(), header="How to run")
    report.put_block(doc, "soak", "## Soak\n\nsoak table")
    report.SECTIONS.clear()

    report.section("Live partials", "")
    report.note("live new table")
    report.section("Cluster", "")
    report.note("cluster table")
    report.merge_markdown(doc, time.time(), ["bench_live_page", "bench_cluster"])
    text = doc.read_text(encoding="utf-8")
    assert "fastagi old table" in text and "old intro" in text and "How to run" in text
    assert "live new table" in text and "live old table" not in text
    assert text.index("## FastAGI") < text.index("## Live partials") < text.index("## Cluster") < text.index("soak table")
    assert text.count("## Live partials") == 1 and text.count("<!-- kept:soak -->") == 1
    assert text.count("- rerun ") == 1 and "bench_live_page, bench_cluster only" in text

    report.SECTIONS.clear()
    report.section("Cluster", "")
    report.note("cluster newer")
    report.merge_markdown(doc, time.time(), ["bench_cluster"])
    text = doc.read_text(encoding="utf-8")
    assert "cluster newer" in text and "cluster table" not in text and "live new table" in text
    assert text.count("- rerun ") == 1 and "bench_cluster only" in text
