"""smbdemo: a small protocol package written against smblayer's public
extension API only (no underscore names; a test checks the imports).

It adds to the reference file client:
* ``DemoTree.disk_usage()``: QUERY_INFO FileFsFullSizeInformation
  (total, free bytes), a command smblayer.fs does not wrap;
* ``DemoTree.lock(path, offset, length)``: a byte-range LOCK held on a
  raw handle, a long-poll request (it may wait on the server);
* a client subclass that counts its reconnects (active handler), shared
  through ``get_client(client_class=...)``;
* a session subclass whose public reconnect hook records the order.
"""
from __future__ import annotations

import struct
from typing import List, Tuple

from smblayer import SmbClient, SmbTask, fs
from smblayer.proto import commands as cmd
from smblayer.proto.smb2 import Command

_FULL_SIZE = struct.Struct("<qqqII")   # total, caller available, actual available units,
#                                        sectors per unit, bytes per sector


class DemoClient(SmbClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reconnects_seen = 0
        self.add_active_handler(self._active_again)

    def _active_again(self, client: SmbClient) -> None:
        self.reconnects_seen += 1


class DemoSession(fs.Session):
    events: List[str] = []

    def on_reconnect(self, client: SmbClient) -> None:
        super().on_reconnect(client)
        self.events.append("session")


class DemoTree(fs.Tree):
    def disk_usage(self) -> Tuple[int, int]:
        """(total bytes, free bytes) of the share's file system."""
        handle = self.open_handle("", directory=True)
        try:
            body = cmd.query_info_request(handle.fid, cmd.INFO_FILESYSTEM,
                                          cmd.FILE_FS_FULL_SIZE_INFORMATION, output_length=64)
            reply = self.client.run_task(SmbTask(Command.QUERY_INFO, body,
                                                 security=self.session, tree=self))
            data = cmd.parse_query_info_response(reply)
        finally:
            self.close_handle(handle)
        if len(data) < _FULL_SIZE.size:
            raise ValueError("FileFsFullSizeInformation truncated")
        total, _caller, actual, sectors, sector_size = _FULL_SIZE.unpack_from(data)
        unit = sectors * sector_size
        return total * unit, actual * unit

    def lock(self, handle, offset: int, length: int, wait: bool = False) -> None:
        """An exclusive byte-range lock on ``handle`` (from open_handle)."""
        flags = cmd.LOCKFLAG_EXCLUSIVE_LOCK | (0 if wait else cmd.LOCKFLAG_FAIL_IMMEDIATELY)
        body = cmd.lock_request(handle.fid, [(offset, length, flags)])
        self.client.run_task(SmbTask(Command.LOCK, body, security=self.session, tree=self,
                                     long_poll=wait, replayable=False))

    def unlock(self, handle, offset: int, length: int) -> None:
        body = cmd.lock_request(handle.fid, [(offset, length, cmd.LOCKFLAG_UNLOCK)])
        self.client.run_task(SmbTask(Command.LOCK, body, security=self.session, tree=self))


def connect(host: str, share: str, username: str, password: str, **options) -> DemoTree:
    return fs.connect(host, share, username, password, client_class=DemoClient,
                      session_class=DemoSession, tree_class=DemoTree, **options)
