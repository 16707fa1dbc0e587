"""Compatibility path: see :mod:`smblayer.transport.iod`."""
# A package, not a .py file, so that git follows the rename of the module
# into smblayer/transport/ when parallel branches merge (issue 19).
from ..transport.iod import SmbIod

__all__ = ["SmbIod"]
