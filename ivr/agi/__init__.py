"""AGI transports for the IVR engine: the protocol, the asyncio FastAGI server, a scripted caller."""
