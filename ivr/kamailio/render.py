"""Render Kamailio's configuration from ``dasan.yaml``'s ``cluster:`` section.

``kamailio.cfg`` (template ``templates/kamailio.cfg.j2``, package data), ``dispatcher.list``
(the Asterisk nodes, shares of new calls) and ``db/`` (a db_text database: the agents'
SIP passwords for auth_db, the same ones the nodes' pjsip.conf carries). Paths inside
kamailio.cfg are absolute: render into the folder Kamailio will read.
"""

from __future__ import annotations

import ipaddress
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from ivr.config import ClusterSettings, Settings
from ivr.queues import QueueConfig, load_queues
from ivr.site_secrets import sip_passwords

TEMPLATES = Path(str(resources.files("ivr.kamailio"))) / "templates"
CONFIG_FILE = "kamailio.cfg"
DISPATCHER_FILE = "dispatcher.list"
DB_DIR = "db"
# Files holding passwords: readable by the owner (and group) only.
SECRET_FILES = frozenset({f"{DB_DIR}/subscriber"})
# dispatcher algorithms (ds_select_dst): 9 weight-based, 4 round-robin
ALGORITHMS = {"weight": 9, "round_robin": 4}
# auth_db reads the subscriber table of this version (Kamailio 5.x schema)
SUBSCRIBER_VERSION = 7
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")
_REALM = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class KamailioRenderError(ValueError):
    pass


def _address(label: str, host: str) -> str:
    """Only literal addresses or plain host names reach the configuration."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOST.fullmatch(host):
            raise KamailioRenderError(f"{label}: {host!r} is not an address or host name") from None
        return host


# A node's dialplan answers a new call at once (Answer() before the IVR): a node that sent its
# 100 Trying and then no answer for this long died with the call.
NODE_ANSWER_MS = 10000


def node_timeout_ms(cluster: ClusterSettings) -> int:
    """How long a new call waits for a node's first reply before trying the next node."""
    return 1500


def weight_shares(weights: list[int]) -> list[int]:
    """Node weights as percentages summing to 100 (dispatcher's weight algorithm fills 100
    slots; a share left over would go to the last node)."""
    total = sum(weights)
    shares = [w * 100 // total for w in weights]
    for i in range(100 - sum(shares)):
        shares[i % len(shares)] += 1
    return shares


def dispatcher_list(cluster: ClusterSettings) -> str:
    lines = ["# Rendered by `dasan kamailio render`: the Asterisk nodes new calls are shared over.",
             "# setid destination flags priority attributes"]
    shares = weight_shares([n.weight for n in cluster.asterisk_nodes])
    for node, share in zip(cluster.asterisk_nodes, shares, strict=True):
        host = _address(f"cluster.asterisk_nodes[{node.name}].sip_host", node.sip_host)
        lines.append(f"1 sip:{host}:{node.sip_port} 0 0 weight={share};duid={node.name}")
    return "\n".join(lines) + "\n"


def _db_text(value: str) -> str:
    """A db_text field: ':' separates fields, '\\' escapes."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n")


def subscriber_table(passwords: dict[str, str], realm: str) -> str:
    """auth_db's subscriber table (db_text): one row per agent endpoint (extension)."""
    rows = ["id(int,auto) username(string) domain(string) password(string) ha1(string,null) ha1b(string,null)"]
    for i, (user, password) in enumerate(sorted(passwords.items()), start=1):
        rows.append(f"{i}:{_db_text(user)}:{_db_text(realm)}:{_db_text(password)}::")
    return "\n".join(rows) + "\n"


def version_table() -> str:
    return f"table_name(string) table_version(int)\nsubscriber:{SUBSCRIBER_VERSION}\n"


def context(settings: Settings, out_dir: Path) -> dict[str, Any]:
    cluster = settings.cluster
    if not cluster.enabled:
        raise KamailioRenderError("cluster.asterisk_nodes is empty: list the Asterisk nodes Kamailio dispatches to")
    k = cluster.kamailio
    _address("cluster.kamailio.host", k.host)
    if not _REALM.fullmatch(k.realm):
        raise KamailioRenderError(f"cluster.kamailio.realm: {k.realm!r} is not a plain name")
    trunk = []
    for value in k.trunk_match:
        try:
            trunk.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise KamailioRenderError(f"cluster.kamailio.trunk_match: {value!r} is not an address or network") from None
    if not trunk:
        raise KamailioRenderError("cluster.kamailio.trunk_match is empty: no trunk could start a call")
    ctl = k.ctl_socket
    if not ctl.startswith("/") or '"' in ctl or "\n" in ctl or len(ctl) > 100:
        raise KamailioRenderError(f"cluster.kamailio.ctl_socket: {ctl!r} is not an absolute socket path "
                                  "(no quotes, at most 100 characters)")
    base = out_dir.resolve()
    for path in (base, base / DB_DIR):
        if '"' in str(path) or "\n" in str(path):
            raise KamailioRenderError(f"{path}: a folder name with quotes cannot go into kamailio.cfg")
    return {"k": k, "trunk_match": trunk, "algorithm": ALGORITHMS[k.algorithm],
            "node_timeout_ms": node_timeout_ms(cluster), "node_answer_ms": NODE_ANSWER_MS,
            "db_dir": base / DB_DIR, "dispatcher_list": base / DISPATCHER_FILE, "ctl_socket": ctl}


def render(settings: Settings, out_dir: Path, q: QueueConfig | None = None) -> dict[str, str]:
    """Relative file name -> content. Raises ``KamailioRenderError`` naming what is wrong."""
    if q is None:
        q = load_queues(settings.queues_dir)
    values = context(settings, out_dir)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    by_user = sip_passwords(settings, q.agents)
    # Phones authenticate with their endpoint name (the extension), as on Asterisk.
    passwords = {a.extension: by_user[a.username] for a in q.agents}
    return {
        CONFIG_FILE: env.get_template(f"{CONFIG_FILE}.j2").render(values),
        DISPATCHER_FILE: dispatcher_list(settings.cluster),
        f"{DB_DIR}/version": version_table(),
        f"{DB_DIR}/subscriber": subscriber_table(passwords, settings.cluster.kamailio.realm),
    }


def write(files: dict[str, str], out_dir: Path) -> list[str]:
    """Write the files (secret ones mode 0600); returns the names that changed."""
    changed = []
    for name, text in files.items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o600 if name in SECRET_FILES else 0o644)
        tmp.replace(target)
        changed.append(name)
    return changed
