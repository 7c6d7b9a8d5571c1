"""Reports over contacts: the one-row-per-contact export and service-level aggregates."""
