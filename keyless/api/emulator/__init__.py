"""Keyless's emulator controls (not a Google API), mounted at /keyless:
keyless.api.emulator.rest."""

from keyless.api.emulator.rest import routes

__all__ = ["routes"]
