"""The data folder's menus and queues: seeded when missing, brought up to date while unedited,
never touched once the site edited them."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ivr.config import Settings
from ivr.datafolder import DEFAULT_MENUS, DEFAULT_QUEUES, MARKER, seed


def test_seed_copies_refreshes_unedited_copies_and_keeps_edited_ones(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert seed(settings) == [settings.agi.menus_dir, settings.queues_dir]
    menu = settings.agi.menus_dir / "main.yaml"
    assert menu.read_bytes() == (DEFAULT_MENUS / "main.yaml").read_bytes()
    assert (settings.queues_dir / "agents.yaml").read_bytes() == (DEFAULT_QUEUES / "agents.yaml").read_bytes()
    assert seed(settings) == []  # up to date: nothing written

    # An unedited copy of an older release's menus (the marker says it is as shipped then).
    older = b"# the menus of an older release\n"
    menu.write_bytes(older)
    marker = settings.agi.menus_dir / MARKER
    digests = json.loads(marker.read_text())
    digests["main.yaml"] = hashlib.sha256(older).hexdigest()
    marker.write_text(json.dumps(digests))
    assert seed(settings) == [settings.agi.menus_dir]
    assert menu.read_bytes() == (DEFAULT_MENUS / "main.yaml").read_bytes()

    # Edited by the site (the admin console, an editor): left alone, whatever the package ships.
    edited = menu.read_text(encoding="utf-8") + "# our own change\n"
    menu.write_text(edited, encoding="utf-8")
    assert seed(settings) == []
    assert menu.read_text(encoding="utf-8") == edited

    # A folder without a marker (laid out by hand) is the site's too.
    (settings.queues_dir / MARKER).unlink()
    (settings.queues_dir / "queues.yaml").write_text("queues: {}\n")
    assert seed(settings) == []
    assert (settings.queues_dir / "queues.yaml").read_text() == "queues: {}\n"


def test_services_starting_together_lay_out_one_complete_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: seed(settings), range(8)))
    assert sorted(p.name for p in settings.agi.menus_dir.iterdir()) == sorted(
        [p.name for p in DEFAULT_MENUS.glob("*.yaml")] + [MARKER])
    assert (settings.queues_dir / "queues.yaml").read_bytes() == (DEFAULT_QUEUES / "queues.yaml").read_bytes()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["menus", "queues"]  # no staging left
    assert seed(settings) == []
