"""smblayer.security.digests: HMAC on the interpreter's own hashes (RFC 2104),
against published vectors and against the stdlib's hmac."""
import hashlib
import hmac

import pytest

from smblayer.security import digests


# RFC 4231 4.2, 4.7 (key longer than the block) and RFC 2202 2 (HMAC-MD5 1, 6)
@pytest.mark.parametrize("key, data, new, expected", [
    (b"\x0b" * 20, b"Hi There", digests.sha256,
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First", digests.sha256,
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\x0b" * 16, b"Hi There", digests.md5, "9294727a3638bb1c13f48ef8158bfc9d"),
    (b"\xaa" * 80, b"Test Using Larger Than Block-Size Key - Hash Key First", digests.md5,
     "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"),
])
def test_hmac_vectors(key, data, new, expected):
    assert digests.hmac_digest(key, (data[:3], data[3:]), new).hex() == expected


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 70000])
def test_hmac_sha256_matches_the_stdlib_below_and_above_the_bulk_size(size):
    key, data = b"k" * 16, bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    parts = (data[:10], memoryview(data)[10:])
    assert digests.hmac_sha256(key, parts) == hmac.new(key, data, hashlib.sha256).digest()
    assert digests.hmac_md5(key, *parts) == hmac.new(key, data, hashlib.md5).digest()


def test_compare_digest():
    assert digests.compare_digest(b"abc", b"abc")
    assert not digests.compare_digest(b"abc", b"abd")
