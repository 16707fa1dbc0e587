"""Credit arithmetic ([MS-SMB2] 3.1.5.2, 3.2.4.1.5)."""
from __future__ import annotations

#: Commands that may charge more than one credit.
MULTI_CREDIT_COMMANDS = frozenset({0x08, 0x09, 0x0B, 0x0E})   # READ WRITE IOCTL QUERY_DIRECTORY

CREDIT_UNIT = 65536


def credit_charge(send_payload: int, expected_response: int, multi_credit: bool) -> int:
    """CreditCharge for a request: 0 without multi-credit (2.0.2), else
    (max(send, expected) - 1) // 65536 + 1."""
    if not multi_credit:
        return 0
    size = max(send_payload, expected_response)
    return 1 if size <= 0 else (size - 1) // CREDIT_UNIT + 1


def credits_needed(charge: int) -> int:
    """Credits (and MessageIds) a request consumes: at least one."""
    return max(1, charge)
