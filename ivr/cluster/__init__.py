"""Several Asterisk nodes and dasan nodes behind one Kamailio (docs/cluster.md)."""
