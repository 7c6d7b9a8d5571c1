"""The data folder: what a site changes lives there, never inside the installed package.

``settings.data_dir`` (``./var`` unless configured) holds, unless a folder is configured
on its own:

- ``dasan.db``: the SQLite database (when ``database.url`` is empty);
- ``menus/main.yaml``: the IVR menus (``agi.menus_dir``), edited in the admin console;
- ``queues/queues.yaml``, ``queues/agents.yaml``: queues, hours, agents (``queues_dir``);
- ``recordings/``: call recordings (``recordings.dir``).

The package ships the defaults (``ivr/menus/``, ``ivr/defaults/queues/``); ``seed`` copies
them into a configured folder that does not exist yet, so a fresh data folder just works, and
brings an unedited copy up to date with a newer package (edited files are never touched).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from ivr.config import Settings

_PACKAGE = Path(str(resources.files("ivr")))
DEFAULT_MENUS = _PACKAGE / "menus"
DEFAULT_QUEUES = _PACKAGE / "defaults" / "queues"


# Beside the copies: each copied file's SHA-256 as shipped, so an unedited copy can follow a
# newer package's defaults while an edited one is never touched.
MARKER = ".shipped.json"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shipped(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.suffix in (".yaml", ".yml") and p.is_file()}


def _copy(default: Path, target: Path) -> None:
    """Write the shipped files into ``target`` so that no reader sees half of them: a new folder
    appears whole (renamed into place), an existing one gets each file replaced atomically.
    Services started together may both do it: the second finds the folder made by the first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        digests = {}
        for name, source in _shipped(default).items():
            shutil.copyfile(source, staging / name)
            digests[name] = _digest(source)
        (staging / MARKER).write_text(json.dumps(digests, indent=1, sort_keys=True))
        if not target.exists():
            try:
                staging.rename(target)
                return
            except OSError:  # another process made it meanwhile: update it file by file below
                pass
        for item in sorted(staging.iterdir()):  # the marker last: it vouches for the files
            if item.name != MARKER:
                os.replace(item, target / item.name)
        os.replace(staging / MARKER, target / MARKER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unedited(target: Path) -> bool:
    """Every file still is the copy the marker records (a folder without one is the site's)."""
    try:
        digests = json.loads((target / MARKER).read_text())
    except (FileNotFoundError, ValueError):
        return False
    return all((target / name).is_file() and _digest(target / name) == digest for name, digest in digests.items())


def seed(settings: Settings) -> list[Path]:
    """Lay out the menus and queues folders: a missing one gets the shipped files; an unedited
    copy of older shipped files gets the current ones; anything edited is the site's and stays.
    Returns the folders written."""
    written = []
    for default, target in ((DEFAULT_MENUS, settings.agi.menus_dir), (DEFAULT_QUEUES, settings.queues_dir)):
        if not target.exists() or (_unedited(target) and any(
                not (target / name).is_file() or _digest(target / name) != _digest(source)
                for name, source in _shipped(default).items())):
            _copy(default, target)
            written.append(target)
    return written
