"""A real Kamailio on loopback addresses, and SIPp processes standing in for Asterisk nodes,
agents' phones and the trunk (tests/test_cluster_kamailio.py, bench/).

Kamailio reads the configuration ``dasan kamailio render`` writes; it runs in the foreground
(``-DD -E``) with its log in a file the tests wait on. SIPp's ``<log>`` actions write one line
per message a fake node or phone received, so a test counts what reached whom.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ivr.config import AsteriskNode, Settings
from ivr.kamailio.render import render, write

KAMAILIO = shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)
KAMCMD = shutil.which("kamcmd") or ("/usr/sbin/kamcmd" if Path("/usr/sbin/kamcmd").exists() else None)
SIPP = shutil.which("sipp")
T = TypeVar("T")
KAM_HOST, NODE1, NODE2, PHONES, TRUNK = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.1"


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 20.0) -> T | None:
    """The first truthy value of ``check()``, asked again every 20 ms until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def sip_options(host: str, port: int, timeout: float = 0.5) -> int | None:
    """The status code Kamailio answers an OPTIONS with (None: no answer in ``timeout``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        me = sock.getsockname()[1]
        tag = uuid.uuid4().hex[:8]
        msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{tag};rport\r\n"
               f"From: <sip:probe@127.0.0.1>;tag={tag}\r\nTo: <sip:{host}:{port}>\r\n"
               f"Call-ID: {tag}@probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        sock.sendto(msg.encode(), (host, port))
        try:
            data = sock.recv(4096).decode(errors="replace")
        except TimeoutError:
            return None
    match = re.match(r"SIP/2\.0 (\d{3})", data)
    return int(match.group(1)) if match else None


def dispatcher_states(ctl_socket: str) -> dict[str, str]:
    """Node URI -> its dispatcher flags (``AP``: active and probed; ``IP``/``TP``: out), as
    ``kamcmd dispatcher.list`` reads them over Kamailio's control socket."""
    assert KAMCMD is not None, "kamcmd comes with the Debian package kamailio"
    out = subprocess.run([KAMCMD, "-s", f"unix:{ctl_socket}", "dispatcher.list"], capture_output=True,
                         text=True, timeout=10)
    return dict(re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", out.stdout))


@dataclass
class Kamailio:
    config: Path
    host: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Kamailio:
        assert KAMAILIO is not None
        run = self.config.parent / "run"
        run.mkdir(exist_ok=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen([KAMAILIO, "-DD", "-E", "-f", str(self.config), "-Y", str(run),
                                      "-m", "64", "-M", "8"], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        wait_for(lambda: self.proc is not None and (self.proc.poll() is not None or sip_options(self.host, self.port) == 200),
                 f"Kamailio answering OPTIONS on {self.host}:{self.port}")
        if self.proc.poll() is not None:
            raise AssertionError(f"Kamailio exited: {self.log.read_text(errors='replace')[-3000:]}")
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 20.0, after: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the log past offset ``after``."""
        regex = re.compile(pattern)
        found = wait_for(lambda: regex.search(self.text(), after), f"{pattern!r} in {self.log}", timeout)
        assert found is not None
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class Sipp:
    """One SIPp process; ``log`` gets the lines of its scenario's ``<log>`` actions."""

    name: str
    scenario: Path
    log: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sipp:
        assert SIPP is not None
        self.log.touch()
        out = (self.log.parent / f"{self.name}.out").open("ab")
        self.proc = subprocess.Popen([SIPP, "-sf", str(self.scenario), "-nostdin",
                                      "-trace_logs", "-log_file", str(self.log), "-trace_err",
                                      "-error_file", str(self.log.parent / f"{self.name}.errors"),
                                      *self.args], stdout=out, stderr=subprocess.STDOUT,
                                     cwd=self.log.parent, start_new_session=True)
        out.close()
        return self

    def lines(self, word: str) -> int:
        return sum(1 for line in self.log.read_text(errors="replace").splitlines() if line.startswith(word + " "))

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def scenario(directory: Path, name: str, xml: str) -> Path:
    path = directory / f"{name}.xml"
    path.write_text('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="' + name + '">\n'
                    + xml + "\n</scenario>\n")
    return path


# A node (Asterisk's stand-in): answers OPTIONS probes, answers each call and waits for its BYE.
NODE_UAS = """
<recv request="OPTIONS" optional="true" next="options"/>
<recv request="INVITE"><action><log message="invite [call_id] [clock_tick]"/></action></recv>
<send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]N[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:node@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
<send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]N[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:node@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=node 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000

]]></send>
<recv request="ACK"/>
<recv request="BYE"><action><log message="bye [call_id] [clock_tick]"/></action></recv>
<send next="end"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
<label id="options"/>
<send next="end"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]O[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
<label id="end"/>
"""


def caller_uac(to_user: str, hold_ms: int) -> str:
    """A caller (the trunk, or a node ringing an agent): logs ``answered``, ``busy`` or
    ``refused <code>`` per call; an answered call is held ``hold_ms`` then hung up."""
    return f"""
<send retrans="500"><![CDATA[
INVITE sip:{to_user}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]C[call_number]
To: <sip:{to_user}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=caller 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 6002 RTP/AVP 0
a=rtpmap:0 PCMU/8000

]]></send>
<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="486" optional="true" next="busy"/>
<recv response="480" optional="true" next="refused"/>
<recv response="503" optional="true" next="refused"/>
<recv response="200" rrs="true"><action><log message="answered [call_id]"/></action></recv>
<send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]C[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
<pause milliseconds="{hold_ms}"/>
<send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]C[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200" next="end"><action><log message="ended [call_id]"/></action></recv>
<label id="busy"/>
<nop><action><log message="busy [call_id]"/></action></nop>
<send next="end"><![CDATA[
ACK sip:{to_user}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-1]
From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]C[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
<label id="refused"/>
<nop><action><log message="refused [call_id]"/></action></nop>
<send><![CDATA[
ACK sip:{to_user}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-1]
From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]C[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
<label id="end"/>
"""


def register_uac(user: str, password: str, contact_port: int | None = None) -> str:
    """A phone registering with digest authentication: logs ``registered`` on 200,
    ``rejected`` when the credentials are challenged again."""
    contact = f"[local_ip]:{contact_port}" if contact_port else "[local_ip]:[local_port]"
    head = f"""REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@[remote_ip]>;tag=[pid]R[call_number]
To: <sip:{user}@[remote_ip]>
Call-ID: [call_id]
Contact: <sip:{user}@{contact}>
Max-Forwards: 70
Expires: 300
"""
    return f"""
<send retrans="500"><![CDATA[
{head}CSeq: 1 REGISTER
Content-Length: 0

]]></send>
<recv response="401" auth="true"/>
<send retrans="500"><![CDATA[
{head}CSeq: 2 REGISTER
[authentication username={user} password={password}]
Content-Length: 0

]]></send>
<recv response="401" optional="true" next="rejected"/>
<recv response="200" next="end"><action><log message="registered [call_id]"/></action></recv>
<label id="rejected"/>
<nop><action><log message="rejected [call_id]"/></action></nop>
<label id="end"/>
"""


def agent_uas(ring_ms: int) -> str:
    """An agent's phone: logs ``invite`` per call, rings ``ring_ms``, answers and waits for BYE."""
    ringing_then_ok = "]]></send>\n<send retrans=\"500\"><![CDATA[\nSIP/2.0 200 OK"
    assert ringing_then_ok in NODE_UAS
    return NODE_UAS.replace(ringing_then_ok, ringing_then_ok.replace(
        "]]></send>\n", f"]]></send>\n<pause milliseconds=\"{ring_ms}\"/>\n"), 1)


class Cluster:
    """Kamailio rendered for two nodes (SIPp UAS on NODE1, NODE2) and the trunk on TRUNK."""
    def __init__(self, root: Path, settings: Settings, probe_seconds: int = 1) -> None:
        self.root = root
        self.settings = settings
        self.node_ports = {NODE1: free_udp_port(NODE1), NODE2: free_udp_port(NODE2)}
        k = settings.cluster.kamailio
        k.host, k.port = KAM_HOST, free_udp_port(KAM_HOST)
        k.probe_seconds = probe_seconds
        k.trunk_match = [f"{TRUNK}/32"]
        # a short private path (a Unix socket path has at most 107 bytes)
        self.ctl_dir = Path(tempfile.mkdtemp(prefix="kam-"))
        k.ctl_socket = str(self.ctl_dir / "ctl")
        settings.cluster.asterisk_nodes = [
            AsteriskNode(name="ast1", sip_host=NODE1, sip_port=self.node_ports[NODE1]),
            AsteriskNode(name="ast2", sip_host=NODE2, sip_port=self.node_ports[NODE2])]
        conf = root / "kamailio"
        write(render(settings, conf), conf)
        self.kamailio = Kamailio(conf / "kamailio.cfg", KAM_HOST, k.port, root / "kamailio.log")
        self.procs: list[Sipp] = []
        self.runs = 0

    def node(self, host: str) -> Sipp:
        n = sum(1 for p in self.procs if p.name.startswith(f"node-{host}"))
        proc = Sipp(f"node-{host}-{n}", scenario(self.root, "node", NODE_UAS), self.root / f"node-{host}-{n}.log",
                    ["-i", host, "-p", str(self.node_ports[host])]).start()
        self.procs.append(proc)
        return proc

    def run(self, xml: str, *args: str, host: str = TRUNK, timeout: float = 90) -> Sipp:
        """A SIPp UAC towards Kamailio, run to its end."""
        self.runs += 1
        name = f"uac-{self.runs}"
        proc = Sipp(name, scenario(self.root, name, xml), self.root / f"{name}.log",
                    [f"{KAM_HOST}:{self.kamailio.port}", "-i", host, "-p", str(free_udp_port(host)), *args]).start()
        self.procs.append(proc)
        proc.wait(timeout)
        return proc

    def calls(self, count: int, rate: int = 20) -> Sipp:
        return self.run(caller_uac("120", 100), "-m", str(count), "-r", str(rate), "-l", str(count))

    def nodes_active(self) -> dict[str, str]:
        """Both nodes' dispatcher states, once Kamailio holds both active (else empty)."""
        states = dispatcher_states(self.settings.cluster.kamailio.ctl_socket)
        wanted = [f"sip:{host}:{port}" for host, port in self.node_ports.items()]
        return states if all(states.get(uri, "").startswith("A") for uri in wanted) else {}

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        self.kamailio.stop()
        shutil.rmtree(self.ctl_dir, ignore_errors=True)


def overlapping_calls(log: Path) -> int:
    """The most calls a SIPp UAS (NODE_UAS, agent_uas) had up at once, from its
    ``invite``/``bye`` lines (SIPp's clock in ms); a call without a BYE stays up."""
    changes = []
    for line in log.read_text(errors="replace").splitlines():
        word, _call, tick = [*line.split(), "", "", ""][:3]
        if word in ("invite", "bye") and tick.isdigit():
            changes.append((int(tick), 0 if word == "bye" else 1))
    up = most = 0
    for _tick, kind in sorted(changes):
        up += 1 if kind else -1
        most = max(most, up)
    return most
