"""The client's multichannel API (``SmbClient.channels``, ``start_channels``...).

Theory of operation
-------------------
:class:`MultichannelMixin` is the face of multichannel on ``SmbClient``:
it builds the client's :class:`~smblayer.transport.channels.ChannelSet`
on the first ``start_channels`` (the fs layer's binder then binds the
channels), shows every channel as a :class:`ChannelInfo` (channel 0, the
client's own connection, first), and gives the request path and the
channel-0 rebinding the two facts they ask of it (``credit_load``,
``channel0_signer``).  The fs layer tells it which sessions are set up
(``session_up``/``session_down``, every kind, guest and anonymous too:
the sessions by id, ``register_session``, are only those with keys), in
the connect worker's ``sessions_up`` under the state lock, for channel 0's
failover decision.  The channels themselves (connections, routing,
failover, the worker) live in ``smblayer.transport.channels``.
"""
from __future__ import annotations

TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import List, Optional

from ..errors import SmbMultichannelError
from .channels import ACTIVE, BINDING, DEAD, ChannelInfo, ChannelSet
from .states import ClientState

__all__ = ["MultichannelMixin", "ChannelInfo"]


class MultichannelMixin:
    """SmbClient's multichannel API (``channels``, ``start_channels``,
    ``add_channel``); the client keeps its ChannelSet in ``_channels``
    (None until channels are started)."""

    _channels: Optional[ChannelSet] = None

    @property
    def channels(self) -> List[ChannelInfo]:
        """Every channel: 0 (this client's connection) first, then the extra
        ones of a multichannel session, each with ``state``, ``local_address``
        and ``remote_address``."""
        conn = self.connection
        state = ACTIVE if self.state is ClientState.ACTIVE else self.state.value
        if self._connector.failing_over:
            state = DEAD if conn is None or conn.lost else BINDING
        first = ChannelInfo(0, state, self.local_address,
                            (self.host, self.port) if conn is not None else None)
        channels = self._channels
        return [first] + (channels.infos() if channels is not None else [])

    def start_channels(self, session, binder) -> List[ChannelInfo]:
        """Bind up to ``max_channels - 1`` more channels of ``session`` to the
        addresses the server lists (``binder``: ``query_interfaces()`` and
        ``bind(channel)``, see smblayer.fs.binding).  Needs ``multichannel=True``."""
        if not self.multichannel:
            raise SmbMultichannelError("this client was not made with multichannel=True",
                                       reason="option")
        with self._state_cond:
            channels = self._channels
            if channels is None:
                channels = self._channels = ChannelSet(
                    self, max_channels=self.max_channels, table_lock=self._inflight.lock,
                    stats=self._stats, sessions=self._sessions,
                    sessions_up=self._connector.sessions_up, wake=self._wake,
                    deliver_break=self._deliver_break, resend=self._send_async,
                    before_reissue=self._before_reissue, connector=self._connector)
                self._connector.failover = channels
        return channels.start(session, binder)

    def add_channel(self, address: str) -> ChannelInfo:
        """Open and bind one more channel to ``address`` (one the server
        listed) now; raises SmbMultichannelError, SmbAuthError (the binding
        failed, e.g. a bad signature) or SmbConnectionError.  The existing
        channels are not affected by a failure."""
        channels = self._channels
        if channels is None:
            raise SmbMultichannelError("multichannel is not started on this client",
                                       reason="session")
        return channels.add(address)

    def requery_interfaces(self) -> None:
        """Query the server's interfaces again now, in the background (the
        client does every 600 s and after losing a channel), and open
        channels to new addresses up to ``max_channels``."""
        channels = self._channels
        if channels is not None:
            channels.requery_soon()

    @property
    def channel_session(self):
        """The session the extra channels are bound to, or None."""
        channels = self._channels
        return channels.session if channels is not None else None

    def close_channels(self) -> None:
        """Close every extra channel (the bound session logs off)."""
        channels, self._channels = self._channels, None
        if channels is not None:
            self._connector.failover = None
            channels.close()

    def channel0_signer(self, session):
        """The key that signs ``session``'s requests on channel 0 when it
        was bound again after a failover, else None (the session's)."""
        conn = self.connection
        bound = conn.bound_signer if conn is not None else None
        return bound[1] if bound is not None and bound[0] is session else None

    def session_up(self, session, generation: int) -> bool:
        """``session`` (any kind: signed, guest, anonymous) has just been set
        up on connection ``generation``: it is one of the client's sessions
        until :meth:`session_down`, which channel 0's failover decision
        counts (``ChannelSet.can_take_over``).  False, and it is not, when
        that connection was lost meanwhile: the server logged the session
        off with it, and a failover decided then did not count it (the
        caller sets it up again).  Under the state lock the decision is
        taken under (``ConnectWorker.connection_lost``), so a session is
        counted either before it or not at all."""
        connector = self._connector
        with connector.state_cond:
            conn = self.connection
            if conn is None or conn.generation != generation or conn.lost:
                return False
            connector.sessions_up.add(session)
            return True

    def session_down(self, session) -> None:
        """``session`` is logged off: no longer one of the client's sessions."""
        connector = self._connector
        with connector.state_cond:
            connector.sessions_up.discard(session)

    def credit_load(self) -> int:
        """Credits in flight on channel 0 (the spreading measure)."""
        return self._credits.in_flight
