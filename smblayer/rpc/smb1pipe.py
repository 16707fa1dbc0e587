"""Named-pipe transceive over SMB1: TRANSACTION with TRANS_TRANSACT_NMPIPE
([MS-CIFS] 2.2.5.6), what SMB2's FSCTL_PIPE_TRANSCEIVE is to
:class:`~smblayer.rpc.dcerpc.RpcPipe`.

Theory of operation
-------------------
The pipe is opened as on SMB2 (``Tree.open_pipe``: NT_CREATE_ANDX on
IPC$).  One TRANSACTION request, addressed to ``\\PIPE\\`` with the setup
words (TRANSACT_NMPIPE, FID), writes a DCE/RPC fragment and returns what
the server answers, up to ``max_output`` bytes; STATUS_BUFFER_OVERFLOW says
more is waiting, and the caller reads it from the pipe (READ_ANDX), as on
SMB2.  ``max_output`` stays below the 64 KiB MaxBufferSize the client
announces, so the reply always comes in one part.  Built on the public
extension API only: the ``smblayer.proto.smb1`` codecs, an SmbTask run on
the tree's client.
"""
from __future__ import annotations

from ..errors import SmbProtocolError
from ..proto import smb1
from ..proto.smb2 import MalformedMessage
from ..proto.status import NtStatus
from ..task import SmbTask

_MAX_OUTPUT = 0xF000


def transact_nmpipe(tree, pipe_file, data: bytes, max_output: int) -> bytes:
    """Write ``data`` to the SMB1 named pipe ``pipe_file`` (from
    ``tree.open_pipe``) and return the server's answer (its first
    ``max_output`` bytes).  The request is not resent after a reconnect:
    the pipe died with the connection (SmbConnectionError)."""
    handle = pipe_file.handle
    body = smb1.pack_transaction((smb1.TRANS_TRANSACT_NMPIPE, handle.fid), data=data,
                                 name=smb1.PIPE_NAME, max_data=min(max_output, _MAX_OUTPUT))
    task = SmbTask(smb1.Command.TRANSACTION, body, tree=tree, security=tree.session,
                   path=handle.path, replayable=False,
                   ok_statuses=(0, NtStatus.BUFFER_OVERFLOW))
    reply = tree.client.run_task(task)
    try:
        _params, out = smb1.parse_transaction_response(reply.message)
    except MalformedMessage as exc:
        raise SmbProtocolError(f"TRANSACT_NMPIPE: {exc}") from None
    return bytes(out)
