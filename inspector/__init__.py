"""inspector: inline inspection daemon for pharmaceutical manufacturing lines."""

__version__ = "0.1.0"
