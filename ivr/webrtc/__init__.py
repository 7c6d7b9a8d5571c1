"""Calls from browsers over WebRTC: citizens' /call page and the agents' console softphone."""
