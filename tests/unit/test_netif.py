"""FSCTL_QUERY_NETWORK_INTERFACE_INFO codec and the multichannel interface
choice (smblayer.proto.netif), and the refusal error's context."""
import struct

import pytest

from smblayer.errors import SmbError, SmbMultichannelError
from smblayer.proto.netif import (CAP_RDMA, CAP_RSS, INTERFACE_INFO_SIZE, NetworkInterface,
                                  channel_addresses, choose_interfaces,
                                  pack_network_interfaces, parse_network_interfaces)
from smblayer.proto.smb2 import MalformedMessage

pytestmark = pytest.mark.timeout(10)

GBIT = 10 ** 9


def iface(address, speed=GBIT, cap=CAP_RSS, index=1):
    return NetworkInterface(index, cap, speed, 6 if ":" in address else 4, address)


def test_round_trip_ipv4_and_ipv6():
    listed = [iface("192.168.1.10", 10 * GBIT), iface("fe80::1", GBIT, CAP_RSS | CAP_RDMA, 2),
              iface("10.0.0.2", GBIT, 0, 3)]
    data = pack_network_interfaces(listed)
    assert len(data) == 3 * INTERFACE_INFO_SIZE
    back = parse_network_interfaces(data)
    assert back == listed
    assert back[1].rdma and back[1].rss and not back[2].rss


def test_layout_by_hand():
    """One entry as [MS-SMB2] 2.2.32.5 lays it out, written without the codec."""
    entry = bytearray(INTERFACE_INFO_SIZE)
    struct.pack_into("<IIIIQ", entry, 0, 0, 7, CAP_RSS, 0, 25 * GBIT)
    struct.pack_into("<HH", entry, 24, 2, 0)
    entry[28:32] = bytes([172, 16, 0, 9])
    (one,) = parse_network_interfaces(bytes(entry))
    assert (one.if_index, one.address, one.link_speed, one.rss) == (7, "172.16.0.9", 25 * GBIT,
                                                                   True)


def test_unknown_family_is_skipped_and_empty_is_empty():
    entry = bytearray(INTERFACE_INFO_SIZE)
    struct.pack_into("<HH", entry, 24, 99, 0)
    assert parse_network_interfaces(bytes(entry)) == []
    assert parse_network_interfaces(b"") == []


@pytest.mark.parametrize("data", [
    b"\x00" * 100,                                                    # truncated
    struct.pack("<I", 8) + b"\x00" * (INTERFACE_INFO_SIZE - 4),       # Next overlaps itself
    struct.pack("<I", INTERFACE_INFO_SIZE) + b"\x00" * (INTERFACE_INFO_SIZE - 4),  # Next past end
])
def test_malformed_raises(data):
    with pytest.raises(MalformedMessage):
        parse_network_interfaces(data)


def test_choice_fastest_first_rss_breaks_ties_each_address_once():
    listed = [iface("10.0.0.1", GBIT, 0), iface("10.0.0.2", GBIT, CAP_RSS),
              iface("10.0.0.3", 10 * GBIT, 0), iface("10.0.0.2", GBIT, CAP_RSS, 9)]
    chosen = choose_interfaces(listed, 8)
    assert [i.address for i in chosen] == ["10.0.0.3", "10.0.0.2", "10.0.0.1"]
    assert [i.address for i in choose_interfaces(listed, 1)] == ["10.0.0.3"]
    assert choose_interfaces(listed + [iface("::1")], 8, families=(6,))[0].address == "::1"


def test_channel_addresses_rss_carries_several_others_one():
    rss = iface("127.0.0.1", 10 * GBIT, CAP_RSS)
    assert channel_addresses([rss], 4, "127.0.0.1") == ["127.0.0.1"] * 3
    plain = [iface("10.0.0.1", GBIT, 0), iface("10.0.0.2", GBIT, 0)]
    # the primary's address already has its one channel
    assert channel_addresses(plain, 4, "10.0.0.1") == ["10.0.0.2"]
    assert channel_addresses(plain, 1, "10.0.0.1") == []
    assert channel_addresses([], 4, "10.0.0.1") == []      # only listed addresses


def test_refusal_error_carries_context():
    err = SmbMultichannelError("multichannel refused: dialect", reason="dialect",
                               dialect="SMB2_1")
    assert isinstance(err, SmbError)
    assert (err.reason, err.dialect, err.address) == ("dialect", "SMB2_1", None)
    import smblayer
    assert smblayer.SmbMultichannelError is SmbMultichannelError
