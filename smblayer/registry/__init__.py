"""Compatibility path: see :mod:`smblayer.transport.registry`."""
# A package, not a .py file, so that git follows the rename of the module
# into smblayer/transport/ when parallel branches merge (issue 19).
from ..transport.registry import Registry, get_client

__all__ = ["get_client", "Registry"]
