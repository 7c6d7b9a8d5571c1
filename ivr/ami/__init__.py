"""The AMI bridge: listens to Asterisk and acts on it.

- ``connection``: one long-lived AMI session on panoramisk (login, reconnect with backoff,
  resync on every connect);
- ``ingest``: AMI events -> contact records and timeline (idempotent, group-committed);
- ``agents``: agent log-in/out, pause, wrap-up through AMI actions;
- ``metrics``: the live wallboard figures (``current_metrics``);
- ``callbacks``: queue callbacks dialled back with Originate;
- ``service``: the ``ami`` service of ``dasan up``; ``cli``: ``dasan agent|metrics|callbacks``.
"""
