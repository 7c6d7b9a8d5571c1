"""The aiohttp application: messaging sidecar, web console, APIs."""
