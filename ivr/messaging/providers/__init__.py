"""SMS/MMS providers, one module each, chosen by name (``sms.provider``).

Every module of this package that defines ``PROVIDER`` (a ``ProviderSpec``) is a provider:
adding one is a file here plus ``sms.provider: <its name>`` in the configuration
(docs/extending.md). ``register`` adds one from elsewhere (a site's own package, a test).
"""

from __future__ import annotations

import importlib
import pkgutil

import aiohttp
from aiohttp import web

from ivr.config import SmsSettings
from ivr.messaging.providers.base import (
    Outgoing,
    Provider,
    ProviderError,
    ProviderSpec,
    Sender,
    SendResult,
)

__all__ = ["Outgoing", "Provider", "ProviderError", "ProviderSpec", "SendResult", "Sender",
           "add_webhooks", "build_provider", "names", "provider_named", "register", "unregister"]

_registry: dict[str, ProviderSpec] = {}
_discovered = False


def _discover() -> dict[str, ProviderSpec]:
    global _discovered
    if not _discovered:
        for info in pkgutil.iter_modules(__path__):
            if info.name == "base" or info.name.startswith("_"):
                continue
            spec = getattr(importlib.import_module(f"{__name__}.{info.name}"), "PROVIDER", None)
            if isinstance(spec, ProviderSpec):
                _registry.setdefault(spec.name, spec)
        _discovered = True
    return _registry


def register(spec: ProviderSpec) -> None:
    """Add a provider; a second one of the same name is refused (it would hide the first)."""
    registry = _discover()
    if spec.name in registry and registry[spec.name] is not spec:
        raise ValueError(f"an SMS provider named {spec.name!r} is already registered")
    registry[spec.name] = spec


def unregister(name: str) -> None:
    _discover().pop(name, None)


def names() -> list[str]:
    return sorted(_discover())


def provider_named(name: str) -> ProviderSpec:
    spec = _discover().get(name)
    if spec is None:
        raise ValueError(f"sms.provider: unknown provider {name!r} (expected one of {', '.join(names())})")
    return spec


def build_provider(sms: SmsSettings, http: aiohttp.ClientSession) -> Sender:
    spec = provider_named(sms.provider)
    spec.options(sms)  # its own settings are checked before anything is sent
    return spec.build(sms, http)


def add_webhooks(app: web.Application) -> None:
    """Every provider's webhooks (a site may receive from a provider it does not send with)."""
    for name in names():
        _registry[name].routes(app)
