"""What the Asterisk templates need to know about WebRTC (http.conf, pjsip.conf, rtp.conf,
sorcery.conf, extensions.conf), checked so a bad setting fails the render, not a call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.config import Settings, WebrtcSettings
from ivr.webrtc import site_settings
from ivr.webrtc.slots import AUTH_FAMILY, AUTH_PREFIX, EXPIRY_FAMILY, slot_names


class WebrtcConfigError(ValueError):
    pass


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int


def host_port(label: str, value: str, default_port: int) -> HostPort | None:
    """``host[:port]`` (``turn:``/``stun:`` prefixes allowed) or None for empty."""
    value = value.strip()
    if not value:
        return None
    for scheme in ("stun:", "turn:", "turns:"):
        if value.startswith(scheme):
            value = value[len(scheme):]
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in " /@;,"):
        raise WebrtcConfigError(f"webrtc.{label}: {value!r} is not host:port (e.g. turn.example.org:3478)")
    return HostPort(host, int(port))


def bracketed(host: str) -> str:
    """An address as it goes before ``:port`` (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def ws_url(w: WebrtcSettings) -> str:
    if w.ws_url:
        return w.ws_url
    if w.tls:
        return f"wss://{bracketed(w.tls_bind) if w.tls_bind not in ('0.0.0.0', '::') else '127.0.0.1'}:{w.tls_port}/ws"
    host = bracketed(w.http_bind) if w.http_bind not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"ws://{host}:{w.http_port}/ws"


def _tls_file(label: str, path: Path | None) -> Path:
    if path is None:
        raise WebrtcConfigError(f"webrtc.{label}: needed when webrtc.tls is on (a PEM file Asterisk can read)")
    return path


def webrtc_context(settings: Settings, agent_usernames: list[str], queue_names: list[str]) -> dict[str, Any]:
    # The settings edited in the admin console (data folder), read at each render: a queued
    # apply run by a process started before the edit renders the edit too.
    site_settings.overlay(settings)
    w = settings.webrtc
    unknown = sorted(set(w.softphone_agents) - set(agent_usernames))
    if unknown:
        raise WebrtcConfigError(f"webrtc.softphone_agents: {', '.join(unknown)} not in queues/agents.yaml")
    if w.enabled and w.video_queue not in queue_names:
        raise WebrtcConfigError(f"webrtc.video_queue: {w.video_queue!r} is not a queue in queues.yaml")
    if w.enabled and not w.audio_codecs:
        raise WebrtcConfigError("webrtc.audio_codecs: at least one of ulaw, alaw")
    turn = host_port("turn_server", w.turn_server, 3478)
    if turn is not None and not w.turn_secret and not (w.turn_username and w.turn_password):
        raise WebrtcConfigError("webrtc.turn_server: give turn_secret (coturn use-auth-secret) or turn_username/turn_password")
    return {
        "enabled": w.enabled,
        "http_bind": w.http_bind,
        "http_port": w.http_port,
        "tls": w.tls,
        "tls_bind": bracketed(w.tls_bind),  # tlsbindaddr is address:port
        "tls_port": w.tls_port,
        "tls_cert_file": _tls_file("tls_cert_file", w.tls_cert_file) if w.tls else None,
        "tls_private_key": _tls_file("tls_private_key", w.tls_private_key) if w.tls else None,
        "stun": host_port("stun_server", w.stun_server, 3478),
        "turn": turn,
        # Asterisk's own TURN allocation needs a long-lived user; with only a shared secret it
        # relies on the browsers' relayed candidates.
        "turn_username": w.turn_username,
        "turn_password": w.turn_password,
        "video_slots": slot_names("video", w.video_slots),
        "voice_slots": slot_names("voice", w.voice_slots),
        "video_queue": w.video_queue,
        "softphone_agents": set(w.softphone_agents),
        "audio": ",".join(w.audio_codecs),
        "video": ",".join(w.video_codecs),
        "auth_prefix": AUTH_PREFIX,
        "auth_family": AUTH_FAMILY,
        "expiry_family": EXPIRY_FAMILY,
    }
