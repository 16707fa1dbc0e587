"""DCE/RPC over SMB named pipes, built only on smblayer's public extension
API: :class:`RpcPipe` (bind, calls with fragmentation), the NDR it needs,
and srvsvc share enumeration (:func:`share_enum`).

    with fs.connect(host, "IPC$", user, pw) as ipc:
        with open_srvsvc(ipc) as pipe:
            shares = share_enum(pipe, host)
"""
from .dcerpc import RpcError, RpcPipe
from .ndr import NdrError, NdrReader, NdrWriter
from .srvsvc import ShareInfo, open_srvsvc, share_enum

__all__ = ["RpcError", "RpcPipe", "NdrError", "NdrReader", "NdrWriter", "ShareInfo",
           "open_srvsvc", "share_enum"]
