"""The version of cellvol, read by hatchling at build time and by the package at run time."""

__version__ = "0.1.0"
