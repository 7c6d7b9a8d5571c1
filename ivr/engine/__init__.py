"""The IVR engine: menus as data, run against a small channel interface (ivr.engine.channel)."""
