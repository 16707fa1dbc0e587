"""FSCTL_QUERY_NETWORK_INTERFACE_INFO ([MS-SMB2] 2.2.32.5): the server's
network interfaces, and the choice of the ones to open channels to.

Theory of operation
-------------------
The IOCTL's output is a chain of NETWORK_INTERFACE_INFO entries of 152
bytes each: Next (offset of the next entry from this one, 0 for the last),
IfIndex, Capability (RSS 0x1, RDMA 0x2), Reserved, LinkSpeed (bits per
second), then a 128-byte SOCKADDR_STORAGE (family 2: port, IPv4 address;
family 23: port, flow info, IPv6 address, scope id).
:func:`parse_network_interfaces` decodes it, bounds-checked: a hostile
answer raises MalformedMessage, never loops (Next must move forward) and
never yields more than MAX_INTERFACES entries.

:func:`choose_interfaces` orders the usable ones as cifs.ko does: faster
links first, RSS-capable before the others at the same speed, and each
address once (the server lists one entry per address; a second entry for
an address it already listed adds nothing).  RDMA-only entries are kept
(the address is reachable over TCP too).  Sans-I/O: no sockets here.
"""
from __future__ import annotations

import ipaddress
import struct
from typing import Iterable, List, Optional, Sequence

from .smb2 import MalformedMessage

__all__ = ["NetworkInterface", "parse_network_interfaces", "choose_interfaces",
           "pack_network_interfaces", "channel_addresses", "CAP_RSS", "CAP_RDMA", "INTERFACE_INFO_SIZE",
           "MAX_INTERFACES"]

CAP_RSS = 0x1
CAP_RDMA = 0x2
INTERFACE_INFO_SIZE = 152
MAX_INTERFACES = 256           # more than any real server lists: the rest is ignored
_FAMILY_INET = 0x0002
_FAMILY_INET6 = 0x0017

_ENTRY = struct.Struct("<IIIIQ")          # Next, IfIndex, Capability, Reserved, LinkSpeed
_FAMILY_PORT = struct.Struct("<HH")       # Family, Port (network order in the value below)


class NetworkInterface:
    """One interface the server lists: ``address`` (text), ``family``
    (4 or 6), ``if_index``, ``capability`` (CAP_RSS | CAP_RDMA bits) and
    ``link_speed`` (bits per second)."""

    __slots__ = ("if_index", "capability", "link_speed", "family", "address")

    def __init__(self, if_index: int, capability: int, link_speed: int, family: int,
                 address: str):
        self.if_index = if_index
        self.capability = capability
        self.link_speed = link_speed
        self.family = family
        self.address = address

    @property
    def rss(self) -> bool:
        return bool(self.capability & CAP_RSS)

    @property
    def rdma(self) -> bool:
        return bool(self.capability & CAP_RDMA)

    def __eq__(self, other) -> bool:
        return isinstance(other, NetworkInterface) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return (self.if_index, self.capability, self.link_speed, self.family, self.address)

    def __repr__(self) -> str:
        caps = "+".join(n for n, b in (("RSS", CAP_RSS), ("RDMA", CAP_RDMA))
                        if self.capability & b) or "-"
        return (f"<NetworkInterface {self.address} if={self.if_index} {caps} "
                f"{self.link_speed / 1e9:g} Gb/s>")


def parse_network_interfaces(data) -> List[NetworkInterface]:
    """The entries of a QUERY_NETWORK_INTERFACE_INFO output buffer; entries
    of an unknown address family are skipped."""
    data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    found: List[NetworkInterface] = []
    offset = 0
    if not len(data):
        return found
    while True:
        if offset + INTERFACE_INFO_SIZE > len(data):
            raise MalformedMessage(f"NETWORK_INTERFACE_INFO at {offset} truncated "
                                   f"({len(data)} bytes)")
        nxt, if_index, capability, _reserved, speed = _ENTRY.unpack_from(data, offset)
        family, _port = _FAMILY_PORT.unpack_from(data, offset + _ENTRY.size)
        addr_at = offset + _ENTRY.size + 4
        if family == _FAMILY_INET:
            found.append(NetworkInterface(if_index, capability, speed, 4, str(
                ipaddress.IPv4Address(bytes(data[addr_at:addr_at + 4])))))
        elif family == _FAMILY_INET6:
            start = addr_at + 4                        # after FlowInfo
            found.append(NetworkInterface(if_index, capability, speed, 6, str(
                ipaddress.IPv6Address(bytes(data[start:start + 16])))))
        if not nxt or len(found) >= MAX_INTERFACES:
            return found
        if nxt < INTERFACE_INFO_SIZE:
            raise MalformedMessage(f"NETWORK_INTERFACE_INFO Next {nxt} overlaps its entry")
        offset += nxt


def pack_network_interfaces(interfaces: Sequence[NetworkInterface]) -> bytes:
    """The wire form of ``interfaces`` (the fake server and the tests)."""
    out = bytearray()
    for i, iface in enumerate(interfaces):
        nxt = 0 if i == len(interfaces) - 1 else INTERFACE_INFO_SIZE
        entry = bytearray(INTERFACE_INFO_SIZE)
        _ENTRY.pack_into(entry, 0, nxt, iface.if_index, iface.capability, 0, iface.link_speed)
        if iface.family == 4:
            _FAMILY_PORT.pack_into(entry, _ENTRY.size, _FAMILY_INET, 0)
            entry[_ENTRY.size + 4:_ENTRY.size + 8] = ipaddress.IPv4Address(iface.address).packed
        else:
            _FAMILY_PORT.pack_into(entry, _ENTRY.size, _FAMILY_INET6, 0)
            at = _ENTRY.size + 8
            entry[at:at + 16] = ipaddress.IPv6Address(iface.address).packed
        out += entry
    return bytes(out)


def choose_interfaces(interfaces: Iterable[NetworkInterface], count: int,
                      families: Optional[Sequence[int]] = None) -> List[NetworkInterface]:
    """At most ``count`` interfaces to open channels to, best first (faster,
    then RSS-capable), each address once; ``families`` (e.g. (4,)) keeps
    only those address families."""
    best = {}
    for iface in interfaces:
        if families is not None and iface.family not in families:
            continue
        if iface.address in ("0.0.0.0", "::"):
            continue
        known = best.get(iface.address)
        if known is None or _rank(iface) < _rank(known):
            best[iface.address] = iface
    return sorted(best.values(), key=_rank)[:max(0, count)]


def _rank(iface: NetworkInterface) -> tuple:
    return (-iface.link_speed, not iface.rss, iface.address)


def channel_addresses(interfaces: Iterable[NetworkInterface], max_channels: int,
                      primary: str) -> List[str]:
    """The addresses of the extra channels to open beside the primary one
    (to ``primary``), at most ``max_channels - 1``: interfaces best first,
    round robin; an RSS-capable interface may carry several channels (the
    server spreads them over its cores), any other one at most one (the
    primary counts if it is to that address).  Only listed addresses."""
    chosen = choose_interfaces(interfaces, MAX_INTERFACES)
    want = max(0, max_channels - 1)
    used = {primary: 1}
    out: List[str] = []
    while chosen and len(out) < want:
        progress = False
        for iface in chosen:
            if len(out) >= want:
                break
            if not iface.rss and used.get(iface.address, 0):
                continue
            used[iface.address] = used.get(iface.address, 0) + 1
            out.append(iface.address)
            progress = True
        if not progress:
            break
    return out
