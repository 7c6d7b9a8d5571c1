"""dasan: an open contact center for city governments (120 / 311) on Asterisk."""

__version__ = "0.1.0"
