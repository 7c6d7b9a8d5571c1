"""The browser-call settings an administrator edits in the console, kept in the data folder.

``<data_dir>/webrtc.yaml`` holds the edited ``webrtc:`` keys (ports, WebSocket URL, certificate
paths, STUN/TURN servers, softphone agents); the TURN secret and password are never in it but
in ``<data_dir>/secrets.yaml`` (mode 0600, section ``webrtc``). Both are laid over the
``webrtc:`` of dasan.yaml (the console's edit is the newer word, and the environment's too)
wherever the settings are used: when the command's settings are built (``ivr.cli``), each time
Asterisk's files are rendered (``asterisk_view.webrtc_context``, so a queued apply run by a process
started before the edit renders the edit too) and, when the files change, by the web app
serving the /call page (:class:`SiteWebrtc`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ivr.config import Settings, WebrtcSettings
from ivr.site_secrets import read_store, secrets_file
from ivr.yamlfile import DataError

log = logging.getLogger("dasan.webrtc")

FILE_NAME = "webrtc.yaml"
# What the admin console edits (besides the video queue's members, in agents.yaml).
EDITABLE: tuple[str, ...] = ("enabled", "http_bind", "http_port", "tls", "tls_bind", "tls_port", "tls_cert_file",
                             "tls_private_key", "ws_url", "stun_server", "turn_server", "turn_username",
                             "softphone_agents")
SECRET_KEYS: tuple[str, ...] = ("turn_secret", "turn_password")  # in secrets.yaml, never shown back
SECRETS_SECTION = "webrtc"


def site_file(settings: Settings) -> Path:
    return settings.data_dir / FILE_NAME


def read_site(settings: Settings) -> dict[str, Any]:
    """The edited keys in ``webrtc.yaml`` ({} without one); DataError for a file that is not ours."""
    path = site_file(settings)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as exc:
        raise DataError([f"{path}: {exc}"]) from None
    if not isinstance(data, dict) or set(data) - set(EDITABLE):
        raise DataError([f"{path}: a mapping of {', '.join(EDITABLE)}"])
    return data


def read_secrets(settings: Settings) -> dict[str, str]:
    section = read_store(settings).get(SECRETS_SECTION) or {}
    return {key: str(section[key]) for key in SECRET_KEYS if isinstance(section, dict) and key in section}


def overlay(settings: Settings) -> None:
    """Lay the data folder's browser-call settings over ``settings.webrtc``, in place (so every
    holder of that object sees them); DataError when they do not validate."""
    edits = read_site(settings) | read_secrets(settings)
    if not edits:
        return
    try:
        merged = WebrtcSettings.model_validate(settings.webrtc.model_dump() | edits)
    except ValidationError as exc:
        raise DataError([f"{site_file(settings)}: {e['loc'][0]}: {e['msg']}" for e in exc.errors()]) from None
    for key in (*EDITABLE, *SECRET_KEYS):
        if key in edits:
            setattr(settings.webrtc, key, getattr(merged, key))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


class SiteWebrtc:
    """Keeps a long-running process's ``settings.webrtc`` up to date with the data folder
    (another web process or node may have saved an edit): re-read when a file changed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._seen: tuple[object, ...] | None = None

    def refresh(self) -> None:
        """Re-read when a file changed; a file that does not validate (edited by hand) is
        logged and the settings in use are kept, so the /call page stays up."""
        stamps = (_stamp(site_file(self.settings)), _stamp(secrets_file(self.settings)))
        if stamps != self._seen:
            self._seen = stamps
            try:
                overlay(self.settings)
            except DataError as exc:
                log.error("browser-call settings not reloaded: %s", "; ".join(exc.problems))
