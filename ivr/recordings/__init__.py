"""The recordings store: layout, index, integrity, retention, and the reviewer API."""
