"""Tree: a connected share, and the file API on it (see DESIGN.md)."""
from __future__ import annotations

import logging
import threading
from typing import Optional

from ..errors import SmbError
from .session import SHARE_FLAG_ENCRYPT_DATA

log = logging.getLogger("smblayer")


class Tree:
    """A connected share.  Built by ``Session.tree_connect(share)``."""

    def __init__(self, session, share: str):
        self.session = session
        self.client = session.client
        self.share = share
        self.tree_id = 0
        self.encrypt = False
        self.maximal_access = 0
        self.connected = False
        self._lock = threading.Lock()
        self._owns_session = False

    def __repr__(self) -> str:
        return f"<Tree \\\\{self.client.host}\\{self.share} id={self.tree_id}>"

    def _connect(self) -> None:
        tree_id, flags, access = self.session._tree_connect_raw(self)
        self.tree_id = tree_id
        self.encrypt = bool(flags & SHARE_FLAG_ENCRYPT_DATA)
        self.maximal_access = access
        self.connected = True

    def _reconnect(self) -> None:
        if self.connected:
            self._connect()

    def disconnect(self) -> None:
        if not self.connected:
            return
        self.connected = False
        self.session._forget_tree(self)
        try:
            self.session._tree_disconnect_raw(self)
        except SmbError as exc:
            log.debug("smblayer: TREE_DISCONNECT failed: %s", exc)

    def close(self) -> None:
        """Disconnect; a tree made by fs.connect() also logs off and releases
        its client."""
        self.disconnect()
        if self._owns_session:
            self._owns_session = False
            try:
                self.session.logoff()
            finally:
                self.client.release()

    def __enter__(self) -> "Tree":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
