"""``dasan asterisk apply`` on a cluster: every Asterisk node gets its own files.

Each node's configuration is what ``dasan asterisk render --node NAME`` writes (its SIP and AMI
addresses, the trunk and agents through Kamailio), written into the node's
``cluster.asterisk_nodes[].config_dir`` (default ``asterisk.config_dir``: the node runs on this
machine) and reloaded over the node's own AMI. Every node is rendered before anything is
written, so a broken YAML changes no node. ``asterisk.conf`` (the node's systemname, read only
at start-up) is written by ``render --node`` when the node is installed; apply leaves it alone
and says so when it does not carry the node's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ivr.asterisk.apply import ApplyError, ApplyResult, apply, apply_files
from ivr.asterisk.render import RenderError, render
from ivr.cluster.node import node_settings
from ivr.config import Settings


@dataclass
class NodeApply:
    """One node's apply: its result, or why its Asterisk could not be reached (files written)."""

    node: str
    config_dir: Path
    result: ApplyResult | None = None
    unreachable: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unreachable and self.result is not None and self.result.ok


def node_dirs(settings: Settings, names: list[str] | None = None,
              config_dir: Path | None = None) -> dict[str, Path]:
    """Node name -> the folder its files go to, for ``names`` (default: every node).

    Raises :class:`RenderError` for an unknown node, ``config_dir`` with several nodes, or two
    nodes that would be written into one folder (each node's files differ).
    """
    cluster = settings.cluster
    if not cluster.asterisk_nodes:
        raise RenderError("cluster.asterisk_nodes is empty: apply one Asterisk without --node")
    try:
        chosen = [cluster.node(n) for n in names] if names else list(cluster.asterisk_nodes)
    except KeyError as exc:
        raise RenderError(str(exc.args[0])) from None
    if config_dir is not None and len(chosen) > 1:
        raise RenderError("--config-dir is one node's folder: give one --node with it")
    dirs = {n.name: config_dir or n.config_dir or settings.asterisk.config_dir for n in chosen}
    by_dir: dict[Path, list[str]] = {}
    for name, path in dirs.items():
        by_dir.setdefault(path.resolve(), []).append(name)
    shared = {path: names for path, names in by_dir.items() if len(names) > 1}
    if shared:
        path, both = next(iter(shared.items()))
        raise RenderError(f"nodes {', '.join(both)} would all be written into {path}: set each node's "
                          "cluster.asterisk_nodes[].config_dir, or run apply --node NAME on each node's machine")
    return dirs


def systemname_warning(config_dir: Path, node: str) -> str | None:
    conf = config_dir / "asterisk.conf"
    text = conf.read_text(errors="replace") if conf.exists() else ""
    if re.search(rf"^\s*systemname\s*=>?\s*{re.escape(node)}\s*$", text, re.MULTILINE):
        return None
    return (f"{conf} does not set systemname = {node}: write it with `dasan asterisk render --node {node}` "
            "and restart that Asterisk (its call ids could collide with another node's)")


async def apply_nodes(settings: Settings, names: list[str] | None = None, config_dir: Path | None = None,
                      reload: bool = True) -> list[NodeApply]:
    """Render every chosen node, then write and reload each in turn; a node that cannot be
    reached does not stop the others (its reloads stay pending for the next apply)."""
    dirs = node_dirs(settings, names, config_dir)
    rendered = {name: (node_settings(settings, name)[0], render(settings, node=name)) for name in dirs}
    out = []
    for name, (node_conf, files) in rendered.items():
        files.pop("asterisk.conf", None)
        done = NodeApply(name, dirs[name])
        try:
            done.result = await apply_files(node_conf, files, dirs[name], reload)
        except ApplyError as exc:
            done.unreachable = str(exc)
        warning = systemname_warning(dirs[name], name)
        if warning:
            done.warnings.append(warning)
        out.append(done)
    return out


async def apply_everywhere(settings: Settings) -> ApplyResult:
    """What the console and the AMI bridge's apply jobs run: the one Asterisk, or every node of
    the cluster as one result (file and module names prefixed ``node/``). Raises
    :class:`ApplyError` naming the nodes that could not be reached, after every node had its turn."""
    if not settings.cluster.asterisk_nodes:
        return await apply(settings)
    done = await apply_nodes(settings)
    merged = ApplyResult(settings.asterisk.config_dir)
    for node in done:
        if node.result is None:
            continue
        merged.changed += [f"{node.node}/{name}" for name in node.result.changed]
        merged.reloaded += [f"{node.node}/{module}" for module in node.result.reloaded]
        merged.restart_needed += [f"{node.node}/{name}" for name in node.result.restart_needed]
        merged.failed.update({f"{node.node}/{module}": why for module, why in node.result.failed.items()})
    away = [f"{node.node}: {node.unreachable}" for node in done if node.unreachable]
    if away:
        raise ApplyError("; ".join(away))
    return merged
