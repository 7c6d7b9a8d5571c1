"""The ICE servers a browser gets: STUN, and TURN with static or short-lived credentials.

With ``webrtc.turn_secret`` the credentials follow coturn's ``use-auth-secret`` (the "TURN REST
API"): user ``<expiry>:<name>``, password base64(HMAC-SHA1(secret, user)); coturn checks
both without any per-user state, and they stop working at the expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from ivr.config import WebrtcSettings
from ivr.webrtc.asterisk_view import host_port


def turn_rest_credentials(secret: str, name: str, ttl_seconds: int, now: float | None = None) -> tuple[str, str]:
    expiry = int((time.time() if now is None else now) + ttl_seconds)
    user = f"{expiry}:{name}"
    password = base64.b64encode(hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()).decode()
    return user, password


def ice_servers(w: WebrtcSettings, name: str, ttl_seconds: int = 3600) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = []
    stun = host_port("stun_server", w.stun_server, 3478)
    if stun is not None:
        servers.append({"urls": [f"stun:{stun.host}:{stun.port}"]})
    turn = host_port("turn_server", w.turn_server, 3478)
    if turn is not None:
        if w.turn_secret:
            user, password = turn_rest_credentials(w.turn_secret, name, ttl_seconds)
        else:
            user, password = w.turn_username, w.turn_password
        servers.append({"urls": [f"turn:{turn.host}:{turn.port}?transport=udp", f"turn:{turn.host}:{turn.port}?transport=tcp"],
                        "username": user, "credential": password})
    return servers
