"""Peer AGI servers the project is measured against (thread-per-call, bare asyncio)."""
