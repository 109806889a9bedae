"""nbvene's version, in a module of its own: written into saved files and result metadata by
modules that must not import the package root (which imports them)."""

__version__ = "0.1.0"
