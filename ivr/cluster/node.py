"""One Asterisk node of the cluster: the settings its configuration is rendered with.

``dasan asterisk render --node NAME`` renders the usual files from these settings: SIP on the
node's address, the trunk identified as Kamailio (the only source of calls), agents dialled
through Kamailio (their registrar), AMI on the node's address for every dasan node, the
FastAGI IVR of the first dasan node, and a ``systemname`` so the node's uniqueids and
linkedids never collide with another node's (``<systemname>-<epoch>.<n>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.config import AsteriskNode, Settings


@dataclass(frozen=True)
class NodeView:
    """What the templates need to know about the node (``cluster_node``)."""

    name: str
    # host:port where agents' calls go (Kamailio looks up where the phone registered)
    kamailio: str
    kamailio_host: str
    # host:port of every IVR server, in the order the dialplan tries them
    ivr_hosts: list[str]


def node_settings(settings: Settings, name: str) -> tuple[Settings, NodeView]:
    """A copy of ``settings`` for node ``name`` and its view; KeyError names an unknown node."""
    cluster = settings.cluster
    node: AsteriskNode = cluster.node(name)
    k = cluster.kamailio
    out = settings.model_copy(deep=True)
    ast = out.asterisk
    ast.sip_bind = f"{node.sip_host}:{node.sip_port}"
    if node.rtp_start is not None and node.rtp_end is not None:  # nodes sharing a machine
        ast.rtp_start, ast.rtp_end = node.rtp_start, node.rtp_end
    ast.trunk_match = [f"{k.host}/32"]
    # Kamailio answers the agents' phones' keepalives; the node does not ping them itself.
    ast.agent_qualify_seconds = 0
    out.ami.host, out.ami.port = node.ami_host, node.ami_port
    permit = list(ast.ami_permit) + [f"{d.agi_host}/32" for d in cluster.dasan_nodes]
    ast.ami_permit = sorted(set(permit), key=permit.index)
    ivr_hosts = [f"{d.agi_host}:{d.agi_port}" for d in cluster.dasan_nodes]
    if ivr_hosts:
        ast.ivr_host = ivr_hosts[0]
    return out, NodeView(name=node.name, kamailio=f"{k.host}:{k.port}", kamailio_host=k.host,
                         ivr_hosts=ivr_hosts)


def asterisk_conf(view: NodeView) -> str:
    """asterisk.conf's options for the node (directories: the installation's defaults)."""
    return ("; Rendered by `dasan asterisk render --node`: this node's name in the cluster.\n"
            "; systemname prefixes every uniqueid and linkedid, so two nodes never share one.\n"
            "[options]\n"
            f"systemname = {view.name}\n")
