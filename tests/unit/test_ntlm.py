"""The in-tree NTLMv2 client: [MS-NLMP] 4.2.4 test vectors, RFC 1320 MD4,
and CHALLENGE parsing that never crashes on bad input."""
import os
import random
import struct

import pytest

from smblayer.errors import SmbProtocolError
from smblayer.security.ntlm import (Challenge, NtlmAuthenticator, build_av_pairs,
                                    lmv2_response, md4, nt_hash, ntlmv2_response, ntowfv2,
                                    rc4, split_user)

# [MS-NLMP] 4.2.1 common values
USER, DOMAIN, PASSWORD = "User", "Domain", "Password"
SERVER_CHALLENGE = bytes.fromhex("0123456789abcdef")
CLIENT_CHALLENGE = b"\xaa" * 8
RANDOM_SESSION_KEY = b"\x55" * 16
TIME = bytes(8)
TARGET_INFO = build_av_pairs([(2, "Domain".encode("utf-16-le")),
                              (1, "Server".encode("utf-16-le"))])


@pytest.mark.parametrize("message, digest", [
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
     "043f8582f241db351ce627e153e7f0e4"),
    (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
])
def test_md4_rfc1320_suite(message, digest):
    assert md4(message).hex() == digest


def test_md4_block_boundaries_match_an_independent_implementation():
    md4_ref = pytest.importorskip("Cryptodome.Hash.MD4")
    for n in (55, 56, 63, 64, 65, 119, 120, 1000):
        data = os.urandom(n)
        assert md4(data) == md4_ref.new(data).digest()


def test_ntlmv2_vectors_ms_nlmp_4_2_4():
    key = ntowfv2(USER, DOMAIN, nt_hash(PASSWORD))
    assert key.hex() == "0c868a403bfd7a93a3001ef22ef02e3f"                 # 4.2.4.1.1
    response, base = ntlmv2_response(key, SERVER_CHALLENGE, CLIENT_CHALLENGE, TIME,
                                     TARGET_INFO)
    assert base.hex() == "8de40ccadbc14a82f15cb0ad0de95ca3"                # 4.2.4.1.2
    assert response[:16].hex() == "68cd0ab851e51c96aabc927bebef6a1c"       # 4.2.4.2.2
    assert lmv2_response(key, SERVER_CHALLENGE, CLIENT_CHALLENGE).hex() == \
        "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"                 # 4.2.4.2.1
    assert rc4(base, RANDOM_SESSION_KEY).hex() == \
        "c5dad2544fc9799094ce1ce90bc9d03e"                                 # 4.2.4.2.3


def test_rc4_pure_python_fallback_matches():
    """rc4() uses cryptography's ARC4 when it has one; the pure-Python
    fallback (older cryptography, no legacy cipher) gives the same bytes."""
    from smblayer.security.ntlm import _rc4_python
    assert _rc4_python(bytes(range(16)), RANDOM_SESSION_KEY) == rc4(bytes(range(16)),
                                                                    RANDOM_SESSION_KEY)
    data = bytes(range(256)) * 3
    assert _rc4_python(b"Key", data) == rc4(b"Key", data)
    assert rc4(b"Key", b"Plaintext").hex() == "bbf316e8d940af0ad3"     # the classic vector


def _challenge(flags=0xE28A8233, info=TARGET_INFO, challenge=SERVER_CHALLENGE) -> bytes:
    head = struct.pack("<8sIHHII8s8xHHI", b"NTLMSSP\0", 2, 0, 0, 56, flags, challenge,
                       len(info), len(info), 56)
    return head + bytes(8) + info


def test_authenticate_message_carries_the_vector_response_and_key():
    auth = NtlmAuthenticator(USER, PASSWORD, DOMAIN)
    negotiate = auth.step(None)
    assert negotiate[:12] == b"NTLMSSP\0\x01\0\0\0"
    msg = auth.authenticate(Challenge(_challenge()), client_challenge=CLIENT_CHALLENGE,
                            exported_key=RANDOM_SESSION_KEY, timestamp=TIME)
    nt_len, _, nt_off = struct.unpack_from("<HHI", msg, 20)
    assert msg[nt_off:nt_off + 16].hex() == "68cd0ab851e51c96aabc927bebef6a1c"
    key_len, _, key_off = struct.unpack_from("<HHI", msg, 52)
    assert msg[key_off:key_off + key_len].hex() == "c5dad2544fc9799094ce1ce90bc9d03e"
    assert auth.session_key == RANDOM_SESSION_KEY
    user_len, _, user_off = struct.unpack_from("<HHI", msg, 36)
    assert msg[user_off:user_off + user_len].decode("utf-16-le") == USER


def test_mic_is_sent_when_the_server_gives_a_timestamp():
    info = build_av_pairs([(2, b"D\0"), (7, bytes(8))])
    auth = NtlmAuthenticator(USER, PASSWORD, DOMAIN)
    auth.step(None)
    msg = auth.step(_challenge(info=info))
    assert auth.complete and len(auth.session_key) == 16
    assert msg[72:88] != bytes(16)                          # the MIC
    lm_len, _, lm_off = struct.unpack_from("<HHI", msg, 12)
    assert msg[lm_off:lm_off + lm_len] == bytes(24)         # LM response zero with a MIC


def test_user_forms_and_hashes():
    assert split_user("DOM\\bob", None) == ("bob", "DOM")
    assert split_user("bob@REALM.TEST", "X") == ("bob@REALM.TEST", "")
    assert split_user("bob", "W") == ("bob", "W")
    nt = nt_hash(PASSWORD)
    assert nt_hash("aad3b435b51404eeaad3b435b51404ee:" + nt.hex()) == nt


def test_malformed_challenges_raise_protocol_errors_only():
    good = _challenge()
    rng = random.Random(1320)
    samples = [b"", b"NTLMSSP\0", good[:47], good[:-3], b"XTLMSSP\0" + good[8:]]
    for _ in range(3000):
        buf = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        samples.append(bytes(buf[:rng.randint(0, len(buf))]))
    for sample in samples:
        auth = NtlmAuthenticator(USER, PASSWORD, DOMAIN)
        auth.step(None)
        try:
            auth.step(sample)
        except SmbProtocolError:
            pass


def test_arguments_are_checked_before_anything_is_sent():
    with pytest.raises(ValueError):
        NtlmAuthenticator("", PASSWORD)
    with pytest.raises(ValueError):
        NtlmAuthenticator(USER, None)
