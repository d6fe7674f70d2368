"""The package version, in a module of its own.

Code inside the package that needs the version (a node announces it in its
membership record) imports it from here: importing the package `__init__`
from below would run the whole public API's imports first, and cycle.
"""

from __future__ import annotations

__version__ = "0.1.0"
"""The version of roger_cluster (nodes announce it; `rogerctl nodes` shows it)."""
