"""The rendered configuration on a real Asterisk: a SIPp caller dials 120, walks the menu with
RFC 2833 DTMF, is recorded, queued and answered by a SIPp agent, then answers the survey.

Runs whenever an ``asterisk`` binary and SIPp (Debian ``sip-tester``) are installed. Asterisk
runs in the foreground from a temporary directory (its own asterisk.conf, loopback ports
only); the FastAGI IVR, the AMI bridge and the database are the project's own, in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ivr.asterisk.apply import apply
from ivr.asterisk.render import render, write
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import Contact
from ivr.speech.audio import decode

ASTERISK = shutil.which("asterisk")
SIPP = shutil.which("sipp")
SIPP_PCAPS = next((p for p in (Path("/usr/share/sip-tester"), Path("/usr/share/sipp")) if (p / "dtmf_2833_1.pcap").exists()), None)
MODULE_DIRS = [Path("/usr/lib/asterisk/modules"), Path("/usr/lib64/asterisk/modules"), Path("/usr/local/lib/asterisk/modules")]
DATA_DIRS = [Path("/var/lib/asterisk"), Path("/usr/share/asterisk")]

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 20/22 to run the real-Asterisk tests"),
    pytest.mark.timeout(120),
]


@pytest.fixture(autouse=True)
def _installable_tools() -> None:
    """Asterisk is the one tool allowed to be missing; the rest are installable and must be here."""
    if SIPP is None or SIPP_PCAPS is None:
        pytest.fail("SIPp with its RFC 2833 DTMF pcaps (Debian package sip-tester) is not installed")
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.fail("espeak-ng and sox are needed to make the IVR's prompts (make debs-run)")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_pair() -> int:
    """A UDP port for SIPp's ``-mp``, with the three after it free too.

    SIPp binds its audio RTP/RTCP at ``-mp`` and ``-mp``+1 and its video RTP/RTCP at +2 and +3,
    even in an audio-only scenario; checking only the first two let two SIPps of one test share
    a video port ("Unable to bind video RTP socket ... Address already in use", exit 254).
    """
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM) & ~3
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
        try:
            for offset, sock in enumerate(sockets):
                sock.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free UDP port pair")


# ---------------------------------------------------------------------------------------
# A throw-away Asterisk


@dataclass
class Pbx:
    root: Path
    conf: Path
    sip_port: int
    proc: subprocess.Popen[bytes]

    def cli(self, command: str, timeout: float = 15) -> str:
        out = subprocess.run([str(ASTERISK), "-C", str(self.conf), "-rx", command],
                             capture_output=True, text=True, timeout=timeout)
        return out.stdout

    def queue_log(self) -> list[list[str]]:
        path = self.root / "log" / "queue_log"
        return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []

    def console(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", (self.root / "asterisk.out").read_text(errors="replace"))


def _prompt(path: Path, text: str, voice: str) -> None:
    """A spoken prompt as Asterisk wants it (8 kHz mono 16-bit wav), or a tone without espeak."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.wav")
    if shutil.which("espeak-ng") and shutil.which("sox"):
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(path)], check=True, capture_output=True)
        raw.unlink()
    elif shutil.which("sox"):
        subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(path), "synth", "1", "sine", "440"], check=True)


def configure(settings: Settings, root: Path) -> None:
    """Loopback ports, temporary folders; what a site would put in dasan.yaml."""
    settings.agi.port = free_port()
    settings.ami.enabled = True
    settings.ami.port = free_port()
    settings.ami.username = "dasan"
    settings.ami.secret = "test-ami-secret"
    settings.recordings.dir = root / "recordings"
    ast = settings.asterisk
    ast.config_dir = root / "etc"
    ast.sip_bind = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    ast.moh_dir = root / "moh"
    ast.agent_qualify_seconds = 0  # SIPp's agent does not answer OPTIONS
    base = 20000 + (os.getpid() * 7 % 200) * 100
    ast.rtp_start, ast.rtp_end = base, base + 98


def start_pbx(settings: Settings, root: Path, prompts: Path) -> Pbx:
    moddir = next((d for d in MODULE_DIRS if (d / "app_queue.so").exists()), None)
    datadir = next((d for d in DATA_DIRS if (d / "documentation").is_dir()), None)
    if moddir is None or datadir is None:
        pytest.skip(f"asterisk is installed but its modules ({MODULE_DIRS}) or data ({DATA_DIRS}) were not found")
    etc = settings.asterisk.config_dir
    write(render(settings), etc)
    # What a stock installation already has in /etc/asterisk; empty is enough here.
    for name in ("features.conf", "indications.conf", "udptl.conf", "pjproject.conf", "ccss.conf"):
        (etc / name).write_text("[general]\n")
    (etc / "acl.conf").write_text("")
    data = root / "data"
    (data / "sounds").mkdir(parents=True)
    (data / "documentation").symlink_to(datadir / "documentation")
    (data / "sounds" / "ko").symlink_to(prompts)
    settings.asterisk.moh_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(settings.asterisk.moh_dir / "tone.wav"),
                    "synth", "3", "sine", "330", "vol", "0.2"], check=True)
    dirs = {name: root / name for name in ("lib", "spool", "run", "log", "agi")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    (dirs["log"] / "cdr-csv").mkdir()
    conf = etc / "asterisk.conf"
    conf.write_text(
        "[directories]\n"
        f"astetcdir => {etc}\nastmoddir => {moddir}\nastvarlibdir => {dirs['lib']}\nastdbdir => {dirs['lib']}\n"
        f"astkeydir => {dirs['lib']}\nastdatadir => {data}\nastagidir => {dirs['agi']}\n"
        f"astspooldir => {dirs['spool']}\nastrundir => {dirs['run']}\nastlogdir => {dirs['log']}\n"
        f"astsbindir => {Path(str(ASTERISK)).parent}\n"
        "[options]\nverbose = 3\ndebug = 0\ndefaultlanguage = ko\n"
    )
    out = (root / "asterisk.out").open("wb")
    proc = subprocess.Popen([str(ASTERISK), "-f", "-n", "-C", str(conf)], stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, cwd=root)
    pbx = Pbx(root, conf, int(settings.asterisk.sip_bind.rsplit(":", 1)[1]), proc)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"asterisk exited with {proc.returncode}:\n{pbx.console()[-3000:]}")
        if (dirs["run"] / "asterisk.ctl").exists() and "fully booted" in pbx.cli("core waitfullybooted"):
            break
        time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError(f"asterisk did not boot in 40 s:\n{pbx.console()[-3000:]}")
    return pbx


def stop_pbx(pbx: Pbx) -> None:
    if pbx.proc.poll() is None:
        with contextlib.suppress(Exception):
            pbx.cli("core stop now", timeout=5)
        try:
            pbx.proc.wait(10)
        except subprocess.TimeoutExpired:
            pbx.proc.kill()
            pbx.proc.wait(5)


@contextlib.asynccontextmanager
async def running_pbx(settings: Settings, root: Path, prompts: Path) -> AsyncIterator[Pbx]:
    """``start_pbx`` off the event loop, and ``stop_pbx`` when the block ends (a fixture's Asterisk)."""
    pbx = await asyncio.to_thread(start_pbx, settings, root, prompts)
    try:
        yield pbx
    finally:
        await asyncio.to_thread(stop_pbx, pbx)


# ---------------------------------------------------------------------------------------
# The IVR side: the project's FastAGI service ("agi" in ivr.services), in this process.


@contextlib.asynccontextmanager
async def ivr_server(settings: Settings, with_ami: bool = False) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The FastAGI IVR on settings.agi.port (and the AMI bridge); yields a function that
    stops the IVR early."""
    from ivr import services
    from ivr.context import AppContext

    ctx = await AppContext.create(settings, migrate=False)
    ivr = services.build("agi", ctx)
    await ivr.start()
    bridge = services.build("ami", ctx) if with_ami else None
    if bridge is not None:
        await bridge.start()
    stopped = False

    async def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            await ivr.stop()

    try:
        yield stop
    finally:
        await stop()
        if bridge is not None:
            await bridge.stop()
        await ctx.close()


@pytest.fixture(scope="session")
def korean_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Placeholder Korean prompts for the menus (espeak-ng), made once per test run."""
    from ivr.engine.runtime import load_checked
    from ivr.prompts import synthesize

    sounds = tmp_path_factory.mktemp("sounds")
    defaults = Settings()
    menus, _queues = load_checked(defaults.agi.menus_dir, defaults.queues_dir)
    asyncio.run(synthesize(menus, sounds, ["ko"]))
    _prompt(sounds / "ko" / "dasan" / "recording-consent.wav", "상담 품질 향상을 위해 통화 내용이 녹음됩니다.", "ko")
    return sounds / "ko"


# ---------------------------------------------------------------------------------------
# SIPp scenarios (adapted from tests/data/asterisk-captures/sipp)

SDP = """v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15"""


def dtmf_pcap(digit: str, press: int, folder: Path) -> Path:
    """SIPp's RFC 2833 pcap for ``digit`` with its own RTP timestamp and sequence numbers.

    Every dtmf_2833_<d>.pcap carries fixed timestamps, and Asterisk drops an event whose
    timestamp it has already seen (a retransmission), so the same key twice needs new ones.
    """
    data = bytearray((SIPP_PCAPS / f"dtmf_2833_{digit}.pcap").read_bytes())  # type: ignore[operator]
    linktype = struct.unpack_from("<I", data, 20)[0]
    link = {1: 14, 113: 16}.get(linktype, 14)
    offset = 24
    while offset + 16 <= len(data):
        length = struct.unpack_from("<I", data, offset + 8)[0]
        ip = offset + 16 + link
        udp = ip + (data[ip] & 0x0F) * 4
        rtp = udp + 8
        seq, ts = struct.unpack_from("!HI", data, rtp + 2)
        struct.pack_into("!HI", data, rtp + 2, (seq + 97 * press) & 0xFFFF, (ts + 160_000 * press) & 0xFFFFFFFF)
        struct.pack_into("!H", data, udp + 6, 0)  # no UDP checksum (optional in IPv4)
        offset += 16 + length
    path = folder / f"dtmf_{press:02d}_{digit}.pcap"
    path.write_bytes(bytes(data))
    return path


def _sipp_scenario(name: str, steps: str) -> str:
    """A SIPp scenario file called ``name`` around ``steps`` (its lines of XML)."""
    return (f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
            f'<scenario name="{name}">\n{steps}\n</scenario>\n')


def caller_scenario(folder: Path, menu_digits: str, survey_digit: str, presses: int = 30) -> str:
    """Call [service]; after the answer key in the menu digits, then keep pressing the survey
    digit every 1.5 s (ignored in the queue and the conversation, read by the survey) until
    Asterisk hangs up."""
    menu = "\n".join(
        f'  <pause milliseconds="{2000 if i == 0 else 1500}"/>\n'
        f'  <nop><action><exec play_pcap_audio="{dtmf_pcap(d, i, folder)}"/></action></nop>'
        for i, d in enumerate(menu_digits))
    survey = "\n".join(
        f'  <label id="press{n}"/>\n'
        f'  <nop><action><exec play_pcap_audio="{dtmf_pcap(survey_digit, len(menu_digits) + n, folder)}"/></action></nop>\n'
        f'  <recv request="BYE" timeout="1500" ontimeout="press{n + 1}" next="bye"/>'
        for n in range(presses))
    return _sipp_scenario("citizen calls 120", f"""  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Citizen" <sip:01012345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:01012345678@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      {SDP}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Citizen" <sip:01012345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:01012345678@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
{menu}
  <recv request="BYE" timeout="1500" ontimeout="press0" next="bye"/>
{survey}
  <label id="press{presses}"/>
  <recv request="BYE" timeout="30000"/>
  <label id="bye"/>
{_ok_without_body(contact="<sip:[local_ip]:[local_port];transport=[transport]>")}
  <pause milliseconds="300"/>""")


def _ok_without_body(contact: str = "") -> str:
    """SIPp's 200 OK to a request that needs no body in the answer (a BYE); a Contact header
    when ``contact`` is given."""
    contact_line = f"      Contact: {contact}\n" if contact else ""
    return f"""  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
{contact_line}      Content-Length: 0
    ]]></send>"""


def _register(extension: str, cseq: int, authenticated: bool = False) -> str:
    """The phone's REGISTER of ``extension``; the second one answers the 401's digest challenge."""
    auth = "      [authentication]\n" if authenticated else ""
    return f"""  <send retrans="500"><![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{extension}@[remote_ip]:[remote_port]>;tag=[pid]reg[call_number]
      To: <sip:{extension}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{extension}@[local_ip]:[local_port]>
      Expires: 300
{auth}      Max-Forwards: 70
      Content-Length: 0
    ]]></send>"""


def _invite_star71(extension: str, cseq: int, authenticated: bool = False) -> str:
    """``extension``'s INVITE to *71 with SDP; the second one answers the 401's digest challenge."""
    auth = "      [authentication]\n" if authenticated else ""
    return f"""  <send retrans="500"><![CDATA[
      INVITE sip:*71@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{extension}@[remote_ip]:[remote_port]>;tag=[pid]inv[call_number]
      To: <sip:*71@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:{extension}@[local_ip]:[local_port]>
{auth}      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      {SDP}
    ]]></send>"""


def _ack_star71(extension: str, cseq: int, via: str) -> str:
    """``extension``'s ACK to the answer to its INVITE to *71: ``via`` is the INVITE's own Via
    for a refusal (the 401, the same transaction) and a new branch for the 200 OK."""
    return f"""  <send><![CDATA[
      ACK sip:*71@[remote_ip]:[remote_port] SIP/2.0
      {via}
      From: <sip:{extension}@[remote_ip]:[remote_port]>;tag=[pid]inv[call_number]
      To: <sip:*71@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>"""


def agent_register_scenario(extension: str) -> str:
    """The counsellor's phone registers (digest auth)."""
    return _sipp_scenario("agent phone registers", f"""{_register(extension, 1)}
  <recv response="401" auth="true"/>
{_register(extension, 2, authenticated=True)}
  <recv response="200"/>""")


def agent_login_scenario(extension: str) -> str:
    """The counsellor dials *71 (digest auth) to log in to their skill queues."""
    return _sipp_scenario("agent logs in with *71", f"""{_invite_star71(extension, 1)}
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
{_ack_star71(extension, 1, "[last_Via:]")}
{_invite_star71(extension, 2, authenticated=True)}
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200"/>
{_ack_star71(extension, 2, "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]")}
  <recv request="BYE" timeout="15000"/>
{_ok_without_body()}""")


def _ringing(user: str, tag: str) -> str:
    """SIPp's 180 Ringing to an INVITE, from ``user``, its To tag named ``tag``."""
    return f"""  <send><![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]{tag}[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]></send>"""


def _answer(user: str, tag: str, to_tag: bool = True, sdp_version: int = 2353687637, retrans: bool = True) -> str:
    """SIPp's 200 OK with A-law and RFC 2833 SDP to an INVITE, from ``user`` (``tag``: the To tag
    and the SDP owner); a re-INVITE's answer keeps the dialog's To (``to_tag=False``)."""
    return f"""  <send{' retrans="500"' if retrans else ''}><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]{f';tag=[pid]{tag}[call_number]' if to_tag else ''}
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o={tag} 53655765 {sdp_version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]></send>"""


def _hang_up(user: str) -> str:
    """The answering phone ``user`` ends the call it answered as ``agent`` (the dialog's Contact,
    From and To captured from Asterisk's INVITE as ast_contact, ast_from and our_to)."""
    return f"""  <send retrans="500"><![CDATA[
      BYE [$ast_contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$our_to];tag=[pid]agent[call_number]
      To: [$ast_from]
      [last_Call-ID:]
      CSeq: 2 BYE
      Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
  <recv response="200" crlf="true"/>"""


def agent_phone_scenario(extension: str, talk_ms: int) -> str:
    """The counsellor's phone rings, answers after 1 s, talks, then the counsellor hangs up."""
    return _sipp_scenario("agent answers and hangs up", f"""  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="sip:[^&gt;]*" search_in="hdr" header="Contact:" check_it="true" assign_to="ast_contact"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" check_it="true" assign_to="ast_from"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="To:" check_it="true" assign_to="our_to"/>
    </action>
  </recv>
{_ringing(extension, "agent")}
  <pause milliseconds="1000"/>
{_answer(extension, "agent")}
  <recv request="ACK" crlf="true"/>
  <nop><action><exec play_pcap_audio="{SIPP_PCAPS}/g711a.pcap"/></action></nop>
  <!-- Asterisk may re-INVITE to show the agent who is connected (a callback's citizen) -->
  <recv request="INVITE" timeout="{talk_ms}" ontimeout="bye"/>
{_answer(extension, "agent", to_tag=False, sdp_version=2353687638, retrans=False)}
  <recv request="ACK" crlf="true"/>
  <pause milliseconds="{talk_ms}"/>
  <label id="bye"/>
{_hang_up(extension)}""")


async def sipp(root: Path, name: str, xml: str, pbx: Pbx, port: int, *args: str,
               timeout: float = 60) -> asyncio.subprocess.Process:
    scenario = root / f"{name}.xml"
    scenario.write_text(xml)
    return await asyncio.create_subprocess_exec(
        str(SIPP), f"127.0.0.1:{pbx.sip_port}", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port),
        "-mp", str(free_udp_pair()), "-m", "1", "-l", "1", "-nostdin", "-timeout", f"{int(timeout)}s",
        "-timeout_error", "-trace_err", "-trace_msg", *args,
        cwd=root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


def sipp_logs(root: Path, name: str) -> str:
    return "".join(p.read_text(errors="replace")[-2500:] for p in root.glob(f"{name}_*.log"))


async def finished(proc: asyncio.subprocess.Process, root: Path, name: str, timeout: float = 70) -> None:
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        logs = await asyncio.to_thread(sipp_logs, root, name)
        raise AssertionError(f"sipp {name} exited {proc.returncode}:\n{out.decode(errors='replace')[-1500:]}\n{logs}")


async def agent_ready(root: Path, pbx: Pbx, extension: str, secret: str, talk_ms: int,
                      timeout: float = 60) -> asyncio.subprocess.Process:
    """The agent's phone registers and waits for a call; then the agent logs in with *71."""
    # Asterisk sends calls to the address a REGISTER came from (rewrite_contact, for phones
    # behind NAT), so the answering SIPp listens on the port the registering one used.
    port = free_port(socket.SOCK_DGRAM)
    register = await sipp(root, "agent_register", agent_register_scenario(extension), pbx, port,
                          "-s", extension, "-au", extension, "-ap", secret, timeout=20)
    await finished(register, root, "agent_register")
    assert f"{extension}/sip:{extension}@127.0.0.1:{port}" in pbx.cli("pjsip show contacts")
    phone = await sipp(root, "agent_phone", agent_phone_scenario(extension, talk_ms), pbx, port, timeout=timeout)
    login = await sipp(root, "agent_login", agent_login_scenario(extension), pbx, free_port(socket.SOCK_DGRAM),
                       "-s", extension, "-au", extension, "-ap", secret, timeout=30)
    await finished(login, root, "agent_login")
    return phone


async def wait_until(check: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def pbx(tmp_path: Path, settings: Settings, korean_prompts: Path) -> AsyncIterator[Pbx]:
    configure(settings, tmp_path)
    settings.asterisk.sounds_dir = korean_prompts.parent
    async with running_pbx(settings, tmp_path, korean_prompts) as p:
        yield p


def agent_login(settings: Settings) -> tuple[str, str]:
    """kim.minji (agent1001: general-ko 5, penalty 0; general-wide 5; en 3) and her SIP password,
    generated into the site's secrets (none ships in agents.yaml)."""
    from ivr.queues import load_queues
    from ivr.site_secrets import sip_password

    agent = next(a for a in load_queues(settings.queues_dir).agents if a.username == "kim.minji")
    return agent.extension, sip_password(settings, agent)


async def test_call_menu_queue_agent_survey(tmp_path: Path, settings: Settings, pbx: Pbx) -> None:
    extension, secret = agent_login(settings)
    async with ivr_server(settings, with_ami=True):
        phone = await agent_ready(tmp_path, pbx, extension, secret, talk_ms=4000, timeout=80)
        members = pbx.cli("queue show general-ko")
        assert f"PJSIP/{extension}" in members and "kim.minji" in members, members
        assert "Not in use" in members or "Unavailable" not in members, members

        caller = await sipp(tmp_path, "caller", caller_scenario(tmp_path, "12", "5"), pbx, free_port(socket.SOCK_DGRAM),
                            "-s", "120", timeout=80)
        await finished(caller, tmp_path, "caller")
        await finished(phone, tmp_path, "agent_phone")

        # the AMI bridge (logged in with the rendered manager.conf user) saw the queue events
        async def bridged() -> Contact | None:
            async with db.session() as session:
                row = (await session.execute(select(Contact))).scalar_one_or_none()
            return row if row is not None and row.talk_seconds is not None and row.satisfaction else None

        db = Database(settings.database_url)
        try:
            contact = await wait_until(bridged, timeout=15, what="the AMI bridge to record the call")
        finally:
            await db.dispose()
        assert contact.queue == "general-ko" and contact.outcome == "answered" and contact.agent_id is not None
        assert contact.talk_seconds >= 3

    # the queue events: joined general-ko, answered by the agent, completed by the agent
    events = await wait_until(lambda: [e for e in pbx.queue_log() if "COMPLETEAGENT" in e] and pbx.queue_log(),
                              what="COMPLETEAGENT in queue_log")
    kinds = [(e[2], e[3], e[4]) for e in events if e[2] == "general-ko"]
    assert ("general-ko", "kim.minji", "CONNECT") in [(q, a, k) for q, a, k in kinds], events
    assert any(k == "ENTERQUEUE" for _, _, k in kinds), events

    # the counselling record: written by the IVR, rated in the survey
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            contacts = list((await session.execute(select(Contact))).scalars())
    finally:
        await db.dispose()
    assert len(contacts) == 1, contacts
    contact = contacts[0]
    assert contact.satisfaction == 5
    assert contact.topic == "transport" and contact.ivr_path, (contact.topic, contact.ivr_path)
    linkedid = contact.call_id
    assert linkedid and linkedid == events[-1][1], (linkedid, events[-1])

    # the recording: recordings/YYYY/MM/DD/<linkedid>.stereo.sln (MixMonitor D), caller and agent
    # interleaved: two channels of the bridged talk (>= 3 s), each with the sound its side sent.
    day = datetime.fromtimestamp(float(linkedid.split(".")[0]), ZoneInfo(settings.timezone))
    path = settings.recordings.dir / day.strftime("%Y/%m/%d") / f"{linkedid}.stereo.sln"
    await wait_until(lambda: path.exists() and path.stat().st_size > 8000, what=f"recording {path}")
    audio = await wait_until(lambda: (a := decode(path)).duration >= 3 and a, what="3 s of two-channel audio")
    assert len(audio.channels) == 2 and audio.sample_rate == 8000
    # file.c's ast_streamfile logs "<chan> Playing 'file.format' (language 'xx')" only once the
    # file opened; a missing prompt logs "Unable to open dasan/recording-consent (format ...)".
    console = pbx.console()
    assert re.search(r"Playing 'dasan/recording-consent\.\w+' \(language '\w+'\)", console), console[-4000:]
    assert "Unable to open dasan/recording-consent" not in console


async def test_caller_reaches_general_queue_when_ivr_is_down(tmp_path: Path, settings: Settings, pbx: Pbx) -> None:
    extension, secret = agent_login(settings)
    async with ivr_server(settings) as stop_ivr:
        await stop_ivr()  # the IVR server goes away: nothing listens on the AGI port any more
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", settings.agi.port)) != 0
        phone = await agent_ready(tmp_path, pbx, extension, secret, talk_ms=2000)
        caller = await sipp(tmp_path, "caller", caller_scenario(tmp_path, "1", "5"), pbx, free_port(socket.SOCK_DGRAM),
                            "-s", "120", timeout=60)
        await finished(caller, tmp_path, "caller")
        await finished(phone, tmp_path, "agent_phone")
    events = pbx.queue_log()
    assert any(e[2] == "general-ko" and e[4] == "CONNECT" for e in events), events
    console = pbx.console()
    assert "IVR unavailable or undecided (AGISTATUS=FAILURE)" in console, console[-3000:]


async def test_apply_reloads_without_dropping_a_waiting_caller(tmp_path: Path, settings: Settings, pbx: Pbx) -> None:
    """A caller waits in general-ko (nobody logged in: the IVR is down, so no menu either);
    queues and dialplan change; apply reloads them over AMI; the caller is still waiting."""
    caller = await sipp(tmp_path, "caller", caller_scenario(tmp_path, "1", "5"), pbx, free_port(socket.SOCK_DGRAM),
                        "-s", "120", timeout=60)
    try:
        # general-ko with nobody logged in overflows at once to general-wide, which always waits
        await wait_until(lambda: "1 call" in pbx.cli("queue show general-wide"), timeout=30, what="caller in general-wide")
        unchanged = await apply(settings)
        assert unchanged.changed == [] and unchanged.reloaded == []
        queues_dir = tmp_path / "queues"
        shutil.copytree(settings.queues_dir, queues_dir)
        text = (queues_dir / "queues.yaml").read_text()
        (queues_dir / "queues.yaml").write_text(text.replace("after_seconds: 120, max_penalty: 4", "after_seconds: 100, max_penalty: 4"))
        settings.queues_dir = queues_dir
        settings.asterisk.ivr_host = "127.0.0.1:1"
        settings.ami.secret = "a-new-ami-secret"  # Asterisk learns it only from this very reload
        result = await apply(settings)
        assert sorted(result.changed) == ["extensions.conf", "manager.conf", "queuerules.conf"], result
        assert result.reloaded == ["app_queue.so", "pbx_config.so", "manager"] and result.ok, result
        assert not (settings.asterisk.config_dir / ".dasan-reload-pending").exists()
        again = await apply(settings)  # logs in with the new secret
        assert again.changed == [] and again.reloaded == [] and again.ok
        assert "penaltychange => 100,4" in pbx.cli("queue rules show rules-general-ko") + (settings.asterisk.config_dir / "queuerules.conf").read_text()
        assert "127.0.0.1:1" in pbx.cli("dialplan show globals")
        assert "1 call" in pbx.cli("queue show general-wide")
        assert caller.returncode is None  # the call is still up
    finally:
        with contextlib.suppress(ProcessLookupError):
            caller.kill()
        await caller.wait()


def spoof_scenario(user: str) -> str:
    """An INVITE to 120 from outside the trunk's address, claiming to be ``user``; expects a refusal."""
    return _sipp_scenario("not the trunk", f"""  <send retrans="500"><![CDATA[
      INVITE sip:120@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[local_ip]:[local_port]>;tag=[pid]spoof[call_number]
      To: <sip:120@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:{user}@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      {SDP}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="401" optional="true" next="refused"/>
  <recv response="403" next="refused"/>
  <label id="refused"/>
  <send><![CDATA[
      ACK sip:120@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:{user}@[local_ip]:[local_port]>;tag=[pid]spoof[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>""")


async def test_only_the_trunk_address_reaches_120_without_a_password(tmp_path: Path, settings: Settings, pbx: Pbx) -> None:
    """127.0.0.2 is not in asterisk.trunk_match: claiming to be the trunk or an agent is refused."""
    for user in ("trunk", "agent1001", "01012345678"):
        scenario = tmp_path / f"spoof_{user}.xml"
        scenario.write_text(spoof_scenario(user))
        proc = await asyncio.create_subprocess_exec(
            str(SIPP), f"127.0.0.1:{pbx.sip_port}", "-sf", str(scenario), "-i", "127.0.0.2", "-p",
            str(free_port(socket.SOCK_DGRAM)), "-mp", str(free_udp_pair()), "-s", "120", "-m", "1", "-nostdin",
            "-timeout", "15s", "-timeout_error", "-trace_err", cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        await finished(proc, tmp_path, f"spoof_{user}", timeout=30)
    assert "dasan-ivr" not in pbx.console()  # no call ever reached the dialplan


async def test_waiting_caller_presses_1_for_a_callback(tmp_path: Path, settings: Settings, pbx: Pbx) -> None:
    """Nobody is logged in: general-ko overflows to general-wide; the caller presses 1 there, the
    IVR's callback route keeps their place (callback_requests) and the call ends."""
    from ivr.db.models import CallbackRequest

    async with ivr_server(settings):
        caller = await sipp(tmp_path, "caller", caller_scenario(tmp_path, "0", "1"), pbx, free_port(socket.SOCK_DGRAM),
                            "-s", "120", timeout=60)
        await finished(caller, tmp_path, "caller")
    assert any(e[2] == "general-wide" and e[4] == "EXITWITHKEY" and e[5] == "1" for e in pbx.queue_log()), pbx.queue_log()
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            requests = list((await session.execute(select(CallbackRequest))).scalars())
            contacts = list((await session.execute(select(Contact))).scalars())
    finally:
        await db.dispose()
    assert len(requests) == 1 and len(contacts) == 1, (requests, contacts)
    assert requests[0].queue == "general-wide" and requests[0].status == "waiting"
    assert requests[0].contact_id == contacts[0].id and requests[0].phone.endswith("1012345678")


def citizen_scenario(number: str) -> str:
    """The citizen's phone behind the trunk: the call must be for ``number``; answer, wait for BYE."""
    return _sipp_scenario("citizen is called back", f"""  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="^INVITE sip:{number}@" search_in="msg" check_it="true" assign_to="ruri"/>
      <log message="called back: [$ruri]"/>
    </action>
  </recv>
{_ringing(number, "citizen")}
{_answer(number, "citizen")}
  <recv request="ACK" crlf="true"/>
  <recv request="BYE" timeout="40000"/>
{_ok_without_body()}""")


async def test_callback_reaches_an_agent_then_dials_the_citizen(tmp_path: Path, settings: Settings) -> None:
    """What the AMI bridge's callback dialer sends: Originate Local/<queue>@dasan-callback; the
    queue offers it to an agent, and once the agent answers the citizen is dialled through the
    trunk (asterisk.trunk_contact)."""
    from ivr.ami.connection import AmiConnection

    extension, secret = agent_login(settings)
    citizen_port = free_port(socket.SOCK_DGRAM)
    configure(settings, tmp_path)
    settings.asterisk.trunk_contact = f"sip:127.0.0.1:{citizen_port}"
    prompts = tmp_path / "no-prompts"
    prompts.mkdir()
    pbx = await asyncio.to_thread(start_pbx, settings, tmp_path, prompts)
    try:
        phone = await agent_ready(tmp_path, pbx, extension, secret, talk_ms=3000)
        citizen = await sipp(tmp_path, "citizen", citizen_scenario("01012345678"), pbx, citizen_port, timeout=50)
        ami = settings.ami  # the bridge's user: Originate needs its `originate` class (manager.conf)
        conn = AmiConnection(ami.host, ami.port, ami.username, ami.secret, action_timeout=40)
        conn.start()
        try:
            await wait_until(conn.logged_in.is_set, what="AMI login")
            reply = await conn.send({
                "Action": "Originate", "Channel": "Local/general-ko@dasan-callback", "Context": "dasan-callback-out",
                "Exten": "01012345678", "Priority": "1", "CallerID": "120", "Timeout": "30000", "Async": "false",
                "Variable": "QUEUE=general-ko"})
        finally:
            await conn.close()
        assert reply.get("Response") == "Success", reply
        await finished(phone, tmp_path, "agent_phone")
        await finished(citizen, tmp_path, "citizen")
        events = pbx.queue_log()
        assert any(e[2] == "general-ko" and e[3] == "kim.minji" and e[4] == "CONNECT" for e in events), events
        assert "Called PJSIP/01012345678@trunk" in pbx.console()
    finally:
        await asyncio.to_thread(stop_pbx, pbx)
