"""Tables every benchmark prints, collected so the runner can write ``docs/benchmarks.md``.

A benchmark calls ``section(...)`` once and ``table(...)``/``note(...)`` as it measures; the
text goes to stdout at once (a long run shows progress) and is kept in ``SECTIONS`` for
``write_markdown``.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    title: str
    intro: str = ""
    parts: list[str] = field(default_factory=list)


SECTIONS: list[Section] = []


def section(title: str, intro: str = "") -> Section:
    s = Section(title, intro.strip())
    SECTIONS.append(s)
    print(f"\n== {title} ==", flush=True)
    if s.intro:
        print(s.intro, flush=True)
    return s


def _current() -> Section:
    if not SECTIONS:
        section("Benchmarks")
    return SECTIONS[-1]


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "") -> None:
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = []
    if caption:
        lines.append(caption)
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in cells)
    print("\n" + "\n".join(lines), flush=True)
    md = [f"**{caption}**\n" if caption else "", "| " + " | ".join(headers) + " |",
          "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(headers))) + " |"]
    md.extend("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells)
    _current().parts.append("\n".join(x for x in md if x))


def note(text: str) -> None:
    print(text, flush=True)
    _current().parts.append(text.strip())


def load_now() -> str:
    """The load average now and the core count, for a bench's closing note: '1.20 0.80 0.50 on 2 cores'."""
    return f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; load average {load}")


# Sections written by other commands (make soak) between these markers survive a make bench.
KEPT = re.compile(r"<!-- kept:(\w+) -->.*?<!-- /kept:\1 -->", re.S)


def kept_blocks(path: Path) -> list[str]:
    try:
        return [m.group(0) for m in KEPT.finditer(path.read_text(encoding="utf-8"))]
    except OSError:
        return []


def put_block(path: Path, name: str, text: str) -> None:
    """Put ``text`` into ``path`` as the kept block ``name`` (replaced if there, else appended)."""
    block = f"<!-- kept:{name} -->\n{text.strip()}\n<!-- /kept:{name} -->"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    found = [m for m in KEPT.finditer(old) if m.group(1) == name]
    new = (old[:found[0].start()] + block + old[found[0].end():]) if found else old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new, encoding="utf-8")


def _section_text(s: Section) -> str:
    out = [f"## {s.title}", ""]
    if s.intro:
        out += [s.intro, ""]
    for part in s.parts:
        out += [part, ""]
    return "\n".join(out).rstrip() + "\n"


def merge_markdown(path: Path, started: float, names: list[str]) -> None:
    """A partial run (``BENCH_ONLY``): the sections it made replace the document's sections of the
    same title (new ones go after the last), every other section and kept block stays as it was."""
    old = path.read_text(encoding="utf-8")
    first_kept = KEPT.search(old)
    head, tail = (old[:first_kept.start()], old[first_kept.start():]) if first_kept else (old, "")
    pieces = re.split(r"(?m)^(?=## )", head)
    preamble, sections = pieces[0], pieces[1:]
    by_title = {piece.splitlines()[0][3:].strip(): i for i, piece in enumerate(sections)}
    for s in SECTIONS:
        text = _section_text(s) + "\n"
        if s.title in by_title:
            sections[by_title[s.title]] = text
        else:
            sections.append(text)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    note = f"- rerun {when} of {', '.join(names)} only (BENCH_ONLY); the other sections are from the run above"
    preamble = re.sub(r"(?m)^- rerun .*\n", "", preamble)
    preamble = re.sub(r"(?m)^(- machine: .*\n)", lambda m: m.group(1) + note + "\n", preamble, count=1)
    path.write_text((preamble + "".join(sections)).rstrip() + "\n\n" + tail.lstrip(), encoding="utf-8")


def write_markdown(path: Path, started: float, header: str = "") -> None:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    out = ["# Benchmarks", "",
           "Generated by `make bench` (`python -m bench`); do not edit by hand. Numbers come from one run on",
           "one machine and are compared side by side in that run; tests never assert them.", "",
           f"- run: {when}, {time.time() - started:.0f} s",
           f"- machine: {machine()}", ""]
    if header:
        out += [header.strip(), ""]
    for s in SECTIONS:
        out += [f"## {s.title}", ""]
        if s.intro:
            out += [s.intro, ""]
        for part in s.parts:
            out += [part, ""]
    out += [*kept_blocks(path), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out).rstrip() + "\n", encoding="utf-8")
