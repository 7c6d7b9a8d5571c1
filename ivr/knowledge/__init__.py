"""The knowledge base: answers written once (per language) for agents, the IVR and SMS replies."""
