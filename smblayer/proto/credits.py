"""Credit arithmetic ([MS-SMB2] 3.1.5.2, 3.2.4.1.5)."""
from __future__ import annotations

import struct
TYPE_CHECKING = False          # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Sequence, Tuple

#: Commands that may charge more than one credit: READ WRITE IOCTL
#: QUERY_DIRECTORY CHANGE_NOTIFY QUERY_INFO SET_INFO.
MULTI_CREDIT_COMMANDS = frozenset({0x08, 0x09, 0x0B, 0x0E, 0x0F, 0x10, 0x11})

CREDIT_UNIT = 65536

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
# Where the fixed request body says how large the response may be:
# READ Length, QUERY_DIRECTORY / CHANGE_NOTIFY / QUERY_INFO OutputBufferLength.
_EXPECTED_AT = {0x08: 4, 0x0E: 28, 0x0F: 4, 0x10: 4}
_IOCTL = 0x0B


def credit_charge(send_payload: int, expected_response: int, multi_credit: bool) -> int:
    """CreditCharge for a request: 0 without multi-credit (2.0.2), else
    (max(send, expected) - 1) // 65536 + 1."""
    if not multi_credit:
        return 0
    # (conditionals, not max(): this runs for every request)
    size = send_payload if send_payload > expected_response else expected_response
    return 1 if size <= 0 else (size - 1) // CREDIT_UNIT + 1


def credits_needed(charge: int) -> int:
    """Credits (and MessageIds) a request consumes: at least one."""
    return charge if charge > 1 else 1


def request_sizes(command: int, body: Sequence, expected_response: int = 0,
                  payload_size: int = -1) -> Tuple[int, int]:
    """(send payload, expected response) of an SMB2 request, for its
    CreditCharge, whatever way the body is split into buffers.

    The send payload is the body minus its fixed part (StructureSize with
    the low "variable part follows" bit cleared: the WRITE data, the IOCTL
    input, the SET_INFO buffer); the expected response is the larger of
    ``expected_response`` and what the fixed body asks for (READ Length,
    MaxOutputResponse + MaxInputResponse, OutputBufferLength).  Never
    raises: a body too short to read gives what can be known."""
    if payload_size < 0:
        payload_size = sum(map(len, body))
    if not body:
        return 0, expected_response
    first = body[0]
    if len(first) < 2:
        send = payload_size - len(first)
        return (send if send > 0 else 0), expected_response
    send = payload_size - (_U16(first, 0)[0] & ~1)
    if send < 0:
        send = 0
    at = _EXPECTED_AT.get(command)
    if at is not None and len(first) >= at + 4:
        asked = _U32(first, at)[0]
    elif command == _IOCTL and len(first) >= 48:
        asked = _U32(first, 32)[0] + _U32(first, 44)[0]
    else:
        return send, expected_response
    return send, (asked if asked > expected_response else expected_response)
