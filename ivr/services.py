"""The long-running services ``dasan up`` starts, registered by name.

A service is built from the shared ``AppContext``, starts listening in ``start`` (returning
the addresses it serves, for the start-up log) and drains in ``stop``.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from ivr.context import AppContext


class Service(Protocol):
    name: str

    async def start(self) -> list[str]: ...

    async def stop(self) -> None: ...


# name -> "module:factory"; the factory takes an AppContext and returns a Service.
REGISTRY: dict[str, str] = {
    "web": "ivr.web.app:WebService",
    "ami": "ivr.ami.service:AmiService",
    "transcribe": "ivr.speech.service:TranscribeService",
    "open311": "ivr.open311.inbound:InboundConsumer",
    "messaging": "ivr.messaging.outbound:MessagingService",
    "agi": "ivr.agi.server:AgiService",
    "cluster": "ivr.cluster.watch:ClusterService",
}


def build(name: str, ctx: AppContext) -> Service:
    module_name, _, attr = REGISTRY[name].partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    service: Service = factory(ctx)
    return service
