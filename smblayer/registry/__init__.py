"""Compatibility path: see :mod:`smblayer.transport.registry` (``get_client``
lives beside SmbClient in :mod:`smblayer.transport.client`)."""
# A package, not a .py file, so that git follows the rename of the module
# into smblayer/transport/ when parallel branches merge (issue 19).
from ..transport.client import get_client
from ..transport.registry import EXIT_WAIT, REGISTRY, Registry

__all__ = ["get_client", "Registry", "REGISTRY", "EXIT_WAIT"]
