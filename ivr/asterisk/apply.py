"""``dasan asterisk apply``: render into Asterisk's directory, then reload what changed.

Reloads go over AMI (``Action: Reload`` with ``Module:``), one per changed module, and none of
them drops a call: a PJSIP reload keeps established dialogs, a dialplan reload takes effect at
a call's next step, an ``app_queue`` reload keeps waiting callers and dynamic (logged-in)
members and re-reads queue parameters and penalty rules. ``modules.conf`` and transport
changes in ``pjsip.conf`` take effect only after an Asterisk restart; the result says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.ami.client import AmiClientProtocol
from ivr.asterisk.render import FILES, render, write
from ivr.config import SYSTEM_USER_SUFFIX, Settings
from ivr.contracts import Stream

# Rendered file -> the module to reload (None: only a restart applies it).
RELOAD_MODULE: dict[str, str | None] = {
    "modules.conf": None,
    "logger.conf": "logger",
    "rtp.conf": "res_rtp_asterisk.so",
    "http.conf": "http",
    "sorcery.conf": None,  # read once at start-up
    "cdr.conf": "cdr",
    "cdr_manager.conf": "cdr_manager.so",
    "cel.conf": "cel",
    "musiconhold.conf": "res_musiconhold.so",
    "pjsip.conf": "res_pjsip.so",
    "queuerules.conf": "app_queue.so",
    "queues.conf": "app_queue.so",
    "extensions.conf": "pbx_config.so",
    "manager.conf": "manager",
}
assert set(RELOAD_MODULE) == set(FILES)


# Changes the console saved but could not get to Asterisk: the AMI bridge applies them later.
APPLY_STREAM = Stream.ASTERISK_APPLY


class ApplyError(RuntimeError):
    pass


def error_text(exc: BaseException) -> str:
    """Why an apply could not finish (a broken YAML names its problems)."""
    problems = getattr(exc, "problems", None)  # ivr.yamlfile.DataError
    return ("; ".join(problems) if problems else str(exc)) or type(exc).__name__


@dataclass
class ApplyResult:
    config_dir: Path
    changed: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    restart_needed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failures(self) -> str:
        """The refused reloads, ``module (Asterisk's message), ...``."""
        return ", ".join(f"{module} ({why})" for module, why in self.failed.items())


# Every module once, in FILES order: manager.conf last, so our own session is the last thing touched.
MODULE_ORDER: list[str] = list(dict.fromkeys(m for m in (RELOAD_MODULE[name] for name in FILES) if m))
# Modules written but not yet reloaded (Asterisk was down, a reload failed, --no-reload): the
# next apply reloads them even though their files no longer differ. Asterisk ignores dot files.
PENDING_FILE = ".dasan-reload-pending"


def modules_to_reload(changed: list[str], pending: list[str] | tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(modules to reload in order without repeats, files that need a restart)."""
    wanted = set(pending) | {RELOAD_MODULE[name] for name in changed} - {None}
    restart = [name for name in FILES if name in changed and RELOAD_MODULE[name] is None]
    return [m for m in MODULE_ORDER if m in wanted], restart


def read_pending(config_dir: Path) -> list[str]:
    path = config_dir / PENDING_FILE
    if not path.exists():
        return []
    return [m for m in path.read_text().split() if m in MODULE_ORDER]


def write_pending(config_dir: Path, modules: list[str]) -> None:
    path = config_dir / PENDING_FILE
    if modules:
        path.write_text("\n".join(modules) + "\n")
    else:
        path.unlink(missing_ok=True)


def deployed_secret(manager_conf: Path, username: str) -> str | None:
    """The AMI secret Asterisk has now: the one in the manager.conf we wrote last time.

    When ``ami.secret`` changes, Asterisk knows the new one only after the reload, so the login
    that performs the reload must use the old one.
    """
    if not manager_conf.exists():
        return None
    section = ""
    for raw in manager_conf.read_text(errors="replace").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line[1:].split("]", 1)[0]
        elif section == username and line.split("=", 1)[0].strip() == "secret" and "=" in line:
            value = line.split("=", 1)[1]
            value = value.split(" ;", 1)[0] if " ;" in value else value
            return value.strip().replace(r"\;", ";")
    return None


class AmiSession:
    """A short AMI session (``ivr.ami.client``): log in, send actions, log off.

    It connects once and says so when Asterisk is down, rather than retrying in the background
    as the bridge does; a command-line tool should report instead of waiting.
    It logs in as ``<username>-system``: the AMI user whose only write class is ``system``
    (Reload, DBPut); the bridge's long-lived user, which carries agents' and citizens' values,
    has no ``system`` (least privilege, docs/asterisk.md).
    """

    def __init__(self, host: str, port: int, username: str, secret: str, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.username, self._secret = f"{username}{SYSTEM_USER_SUFFIX}", secret
        self.protocol: AmiClientProtocol | None = None

    async def __aenter__(self) -> AmiSession:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(loop.create_connection(
                lambda: AmiClientProtocol(lambda _events: None, lambda _exc: None), self.host, self.port), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise ApplyError(f"AMI {self.host}:{self.port} not reachable / 연결 안 됨: {exc or 'timeout'}") from exc
        self.protocol = protocol
        try:
            reply = await asyncio.wait_for(protocol.send(
                {"Action": "Login", "Username": self.username, "Secret": self._secret, "Events": "off"}), self.timeout)
        except (TimeoutError, ConnectionError):
            protocol.close()
            raise ApplyError(f"AMI {self.host}:{self.port}: no reply to Login") from None
        if reply.get("Response") != "Success":
            protocol.close()
            raise ApplyError(f"AMI login refused / 로그인 거부: {reply.get('Message', '')}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.protocol is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.protocol.send({"Action": "Logoff"}), 2)
        self.protocol.close()

    async def action(self, action: dict[str, Any]) -> dict[str, str]:
        if self.protocol is None or self.protocol.closed:
            raise ApplyError(f"AMI {action['Action']}: not connected")
        try:
            reply = await asyncio.wait_for(self.protocol.send(action), self.timeout)
        except TimeoutError:
            raise ApplyError(f"AMI {action['Action']}: no reply in {self.timeout:g} s") from None
        except ConnectionError as exc:
            raise ApplyError(f"AMI {action['Action']}: {exc}") from None
        return dict(reply)


async def reload_modules(settings: Settings, modules: list[str], secret: str | None = None) -> tuple[list[str], dict[str, str]]:
    """Reload each module over AMI; returns (reloaded, failed module -> Asterisk's message)."""
    reloaded: list[str] = []
    failed: dict[str, str] = {}
    ami = settings.ami
    async with AmiSession(ami.host, ami.port, ami.username, secret or ami.secret,
                          settings.asterisk.ami_timeout) as session:
        for module in modules:
            reply = await session.action({"Action": "Reload", "Module": module})
            if reply.get("Response") == "Success":
                reloaded.append(module)
            else:
                failed[module] = reply.get("Message", "error")
    return reloaded, failed


async def apply(settings: Settings, config_dir: Path | None = None, reload: bool = True) -> ApplyResult:
    """Render into ``config_dir`` (default ``asterisk.config_dir``) and reload what changed.

    One Asterisk; a cluster's nodes are applied each with its own files (ivr.cluster.apply).
    """
    target = config_dir or settings.asterisk.config_dir
    return await apply_files(settings, render(settings), target, reload)


async def apply_files(settings: Settings, files: dict[str, str], target: Path, reload: bool = True) -> ApplyResult:
    """Write rendered ``files`` into ``target`` and reload what changed over the AMI of
    ``settings.ami`` (raises :class:`ApplyError` when that Asterisk cannot be reached; the
    modules it did not reload stay pending for the next apply)."""
    secret = deployed_secret(target / "manager.conf", settings.ami.username)
    result = ApplyResult(target, changed=write(files, target))
    modules, result.restart_needed = modules_to_reload(result.changed, read_pending(target))
    write_pending(target, modules)
    if reload and modules:
        result.reloaded, result.failed = await reload_modules(settings, modules, secret)
        write_pending(target, [m for m in modules if m not in result.reloaded])
    return result
