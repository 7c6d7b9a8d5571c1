"""The data folder: what a site changes lives there, never inside the installed package.

``settings.data_dir`` (``./var`` unless configured) holds, unless a folder is configured
on its own:

- ``dasan.db``: the SQLite database (when ``database.url`` is empty);
- ``menus/main.yaml``: the IVR menus (``agi.menus_dir``), edited in the admin console;
- ``queues/queues.yaml``, ``queues/agents.yaml``: queues, hours, agents (``queues_dir``);
- ``recordings/``: call recordings (``recordings.dir``).

The package ships the defaults (``ivr/menus/``, ``ivr/defaults/queues/``); ``seed`` copies
them into a configured folder that does not exist yet, so a fresh data folder just works.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from ivr.config import Settings

_PACKAGE = Path(str(resources.files("ivr")))
DEFAULT_MENUS = _PACKAGE / "menus"
DEFAULT_QUEUES = _PACKAGE / "defaults" / "queues"


def seed(settings: Settings) -> list[Path]:
    """Copy the shipped menus and queues into their configured folders where those are missing.

    A folder that exists is the site's own and is left as it is. Returns the folders made.
    """
    made = []
    for default, target in ((DEFAULT_MENUS, settings.agi.menus_dir), (DEFAULT_QUEUES, settings.queues_dir)):
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(default, target, ignore=shutil.ignore_patterns("*.md", "__pycache__"))
        made.append(target)
    return made
