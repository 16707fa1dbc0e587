"""What the deferred-close test modules share: each runs on Samba 4.17
and 4.22 (``samba``), connects with ``connect(samba, **options)`` and
starts from a 4 KiB file (``new_file``)."""
import os

import pytest

from smblayer import fs
from smblayer.testing.pytest_plugin import SERVERS, on_both


@pytest.fixture(scope="module", params=SERVERS)
def samba(request, samba):
    return on_both(request, samba, "samba_422")


def connect(samba, **kw):
    return fs.connect(samba.host, "share", samba.username, samba.password, port=samba.port,
                      **kw)


def new_file(tree, prefix: str):
    """(name, data): a new 4 KiB file of random bytes on ``tree``."""
    name = f"{prefix}-{os.urandom(4).hex()}.bin"
    data = os.urandom(4096)
    tree.write_bytes(name, data)
    return name, data
