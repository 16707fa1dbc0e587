"""Which open a kept handle serves (fs.deferred.reusable, the one place
that defines it): no server needed."""
import pytest

from smblayer.fs.deferred import reusable
from smblayer.fs.ops import (FILE_CREATE, FILE_OPEN, FILE_OPEN_IF, FILE_OVERWRITE_IF,
                             FILE_READ_DATA, FILE_SHARE_ALL, FILE_WRITE_DATA, LEASE_HANDLE,
                             LEASE_READ, LEASE_WRITE, OPLOCK_LEASE, FileInfo, Handle)

pytestmark = pytest.mark.timeout(10)

RWH = LEASE_READ | LEASE_WRITE | LEASE_HANDLE
READ, WRITE = FILE_READ_DATA, FILE_READ_DATA | FILE_WRITE_DATA


def kept(access, lease=RWH, durable=True):
    return Handle(b"f" * 16, "a", FileInfo(), OPLOCK_LEASE, lease_key=b"k" * 16,
                  lease_state=lease, access=access,
                  create_guid=b"g" * 16 if durable else None)


@pytest.mark.parametrize("handle_access,asked,disposition,expected", [
    (WRITE, WRITE, FILE_OPEN, True),              # "r+"
    (WRITE, WRITE, FILE_OPEN_IF, True),           # "a"
    (WRITE, WRITE, FILE_OVERWRITE_IF, True),      # "w": truncated
    (WRITE, READ, FILE_OPEN, True),               # a writer's handle serves a reader
    (READ, WRITE, FILE_OPEN, False),              # ... not the other way round
    (WRITE, WRITE, FILE_CREATE, False),           # "x" must fail on the existing file
    (WRITE, WRITE, -1, False),                    # extra create contexts
])
def test_reusable(handle_access, asked, disposition, expected):
    assert reusable(kept(handle_access), asked, disposition, FILE_SHARE_ALL, True) is expected


def test_reusable_needs_handle_caching_same_share_and_durability():
    assert not reusable(kept(WRITE, lease=LEASE_READ | LEASE_WRITE), WRITE, FILE_OPEN,
                        FILE_SHARE_ALL, False)
    assert not reusable(kept(WRITE), WRITE, FILE_OPEN, 1, False)
    assert not reusable(kept(WRITE, durable=False), WRITE, FILE_OPEN, FILE_SHARE_ALL, True)
    v1 = kept(WRITE, durable=False)                # durable v1 (SMB 2.x): no CreateGuid
    v1.durable = True
    assert reusable(v1, WRITE, FILE_OPEN, FILE_SHARE_ALL, True)
    assert reusable(kept(WRITE), WRITE, FILE_OPEN, FILE_SHARE_ALL, False)
