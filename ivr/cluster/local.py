"""A whole cluster on one machine, for trying it (``dasan cluster up --dir DIR``): Kamailio and
every Asterisk node of ``cluster:`` started from folders under DIR, each node with its own
directories (etc, lib, spool, run, log), its own RTP ports and its own systemname.

The node addresses in ``cluster:`` must be this machine's (loopback addresses such as
127.0.0.3 and 127.0.0.4 all work on Linux). Asterisk's modules and XML documentation are the
installed ones.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ivr.asterisk.render import render as render_asterisk
from ivr.asterisk.render import write as write_asterisk
from ivr.config import Settings
from ivr.kamailio.render import render as render_kamailio
from ivr.kamailio.render import write as write_kamailio

MODULE_DIRS = (Path("/usr/lib/asterisk/modules"), Path("/usr/lib64/asterisk/modules"),
               Path("/usr/local/lib/asterisk/modules"), Path("/usr/lib/x86_64-linux-gnu/asterisk/modules"))
DATA_DIRS = (Path("/var/lib/asterisk"), Path("/usr/share/asterisk"))
# What a packaged Asterisk has in /etc/asterisk and the rendered files do not carry: empty is enough.
STOCK_FILES = ("features.conf", "indications.conf", "udptl.conf", "pjproject.conf", "ccss.conf", "acl.conf")


class LocalClusterError(RuntimeError):
    pass


def installed_asterisk() -> tuple[Path, Path, Path]:
    """(asterisk binary, module folder, data folder with the XML documentation)."""
    binary = shutil.which("asterisk") or shutil.which("asterisk", path="/usr/sbin:/usr/local/sbin")
    moddir = next((d for d in MODULE_DIRS if (d / "app_queue.so").exists()), None)
    datadir = next((d for d in DATA_DIRS if (d / "documentation").is_dir()), None)
    if binary is None or moddir is None or datadir is None:
        raise LocalClusterError(f"Asterisk is not installed here (binary {binary}, modules in {MODULE_DIRS}, "
                                f"documentation in {DATA_DIRS})")
    return Path(binary), moddir, datadir


def node_layout(settings: Settings, name: str, root: Path, rtp: tuple[int, int]) -> Path:
    """Render node ``name`` into ``root`` with its own directories; returns its asterisk.conf."""
    binary, moddir, datadir = installed_asterisk()
    node_settings = settings.model_copy(deep=True)
    node_settings.asterisk.rtp_start, node_settings.asterisk.rtp_end = rtp
    etc = root / "etc"
    files = render_asterisk(node_settings, node=name)
    write_asterisk(files, etc)
    for stock in STOCK_FILES:
        if not (etc / stock).exists():
            (etc / stock).write_text("" if stock == "acl.conf" else "[general]\n")
    dirs = {d: root / d for d in ("lib", "spool", "run", "log", "agi", "data")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    (dirs["log"] / "cdr-csv").mkdir(exist_ok=True)
    for link, target in (("documentation", datadir / "documentation"), ("sounds", settings.asterisk.sounds_dir)):
        path = dirs["data"] / link
        if not path.exists() and not path.is_symlink():
            if target.exists():
                path.symlink_to(target)
            else:
                path.mkdir()
    conf = etc / "asterisk.conf"
    # the rendered [options] (systemname) after this node's own [directories]
    conf.write_text(
        "[directories]\n"
        f"astetcdir => {etc}\nastmoddir => {moddir}\nastvarlibdir => {dirs['lib']}\nastdbdir => {dirs['lib']}\n"
        f"astkeydir => {dirs['lib']}\nastdatadir => {dirs['data']}\nastagidir => {dirs['agi']}\n"
        f"astspooldir => {dirs['spool']}\nastrundir => {dirs['run']}\nastlogdir => {dirs['log']}\n"
        f"astsbindir => {binary.parent}\n" + files["asterisk.conf"])
    return conf


def rtp_ranges(settings: Settings, count: int) -> list[tuple[int, int]]:
    """asterisk.rtp_start..rtp_end shared out, so nodes on one machine never pick one port."""
    start, end = settings.asterisk.rtp_start, settings.asterisk.rtp_end
    size = (end - start) // count
    if size < 4:
        raise LocalClusterError(f"asterisk.rtp_start..rtp_end ({start}-{end}) is too small for {count} nodes")
    return [(start + i * size, start + (i + 1) * size - 2) for i in range(count)]


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class LocalCluster:
    settings: Settings
    root: Path
    processes: list[Process] = field(default_factory=list)
    confs: dict[str, Path] = field(default_factory=dict)

    def _spawn(self, name: str, args: list[str]) -> Process:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.root, start_new_session=True)
        process = Process(name, proc, log)
        self.processes.append(process)
        return process

    def asterisk_cli(self, node: str, command: str) -> str:
        binary, _moddir, _datadir = installed_asterisk()
        return subprocess.run([str(binary), "-C", str(self.confs[node]), "-rx", command],
                              capture_output=True, text=True, timeout=15).stdout

    def start(self, timeout: float = 60.0) -> list[str]:
        """Render everything, start Kamailio and the nodes; returns what runs where."""
        binary, _moddir, _datadir = installed_asterisk()
        kamailio = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/usr/local/sbin")
        if kamailio is None:
            raise LocalClusterError("kamailio is not installed (Debian package kamailio)")
        cluster = self.settings.cluster
        kdir = self.root / "kamailio"
        (kdir / "run").mkdir(parents=True, exist_ok=True)
        local = self.settings.model_copy(deep=True)
        local.cluster.kamailio.ctl_socket = str((kdir / "run" / "kamailio_ctl").resolve())  # beside its run files
        write_kamailio(render_kamailio(local, kdir), kdir)
        nodes = cluster.asterisk_nodes
        for node, rtp in zip(nodes, rtp_ranges(self.settings, len(nodes)), strict=True):
            self.confs[node.name] = node_layout(self.settings, node.name, self.root / node.name, rtp)
        self._spawn("kamailio", [kamailio, "-DD", "-E", "-f", str(kdir / "kamailio.cfg"), "-Y", str(kdir / "run")])
        for node in nodes:
            self._spawn(node.name, [str(binary), "-f", "-n", "-C", str(self.confs[node.name])])
        deadline = time.monotonic() + timeout
        for node in nodes:
            run = self.root / node.name / "run" / "asterisk.ctl"  # node_layout's run folder
            while not (run.exists() and "fully booted" in self.asterisk_cli(node.name, "core waitfullybooted")):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise LocalClusterError(f"Asterisk {node.name} did not boot in {timeout:.0f} s")
                time.sleep(0.2)
        self._check_alive()
        k = cluster.kamailio
        lines = [f"kamailio: sip:{k.host}:{k.port} (log {self.root / 'kamailio.log'})"]
        lines += [f"{n.name}: sip:{n.sip_host}:{n.sip_port}, AMI {n.ami_host}:{n.ami_port}, "
                  f"systemname {n.name} (log {self.root / (n.name + '.log')})" for n in nodes]
        return lines

    def _check_alive(self) -> None:
        for p in self.processes:
            if p.proc.poll() is not None:
                tail = p.log.read_text(errors="replace")[-2000:]
                raise LocalClusterError(f"{p.name} exited with {p.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for p in reversed(self.processes):
            if p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.proc.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.proc.wait(15)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()
