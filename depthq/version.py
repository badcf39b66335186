"""The version of depthq (a leaf module: the command line reads it without the package's API)."""

__version__ = "0.2.0"
