"""The AMI bridge: listens to Asterisk and acts on it.

- ``protocol``/``client``/``wire``: AMI framing, one session over TCP (no library), and the
  gate every action passes (no CR/LF/NUL);
- ``connection``: one long-lived AMI session (login, reconnect with backoff, resync on every
  connect);
- ``ingest``: AMI events -> contact records and timeline (idempotent, group-committed), one
  handler per event in ``handlers``, the SQL in ``statements``;
- ``agents``: agent log-in/out, pause, wrap-up through AMI actions;
- ``metrics``: the live wallboard figures (``current_metrics``);
- ``callbacks``: queue callbacks dialled back with Originate;
- ``service``: the ``ami`` service of ``dasan up``; ``cli``: ``dasan agent|metrics|callbacks``.
"""
