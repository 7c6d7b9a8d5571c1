"""Kamailio in front of several Asterisk nodes: rendered configuration (docs/cluster.md)."""
