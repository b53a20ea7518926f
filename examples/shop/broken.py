"""A module that fails on import, for the CLI's error handling tests."""

from . import signals

SETTINGS: dict[str, str] = {}
DATABASE = SETTINGS["database_url"]  # raises KeyError at import time
del signals
