"""Pure (sans-I/O) SMB security: key derivation, signing, encryption, preauth
hash and pyspnego authentication.  No sockets, threads or clocks here."""
from .auth import (AUTH_PROTOCOLS, AnonymousAuthenticator, AuthenticationFailed, Authenticator,
                   NtlmWithoutIntegrity, authenticator, check_auth_protocol, kerberos_available)
from .crypto import (
    AES_128_CCM, AES_128_GCM, AES_256_CCM, AES_256_GCM, TRANSFORM_HEADER_SIZE, DecryptError,
    TransformCipher, transform_session_id,
)
from .kdf import SessionKeys, derive_session_keys, smb3kdf
from .preauth import PreauthHash
from .signing import AES_CMAC, AES_GMAC, HMAC_SHA256, Smb1Signer, Smb2Signer, gmac_nonce

__all__ = [
    "AES_128_CCM", "AES_128_GCM", "AES_256_CCM", "AES_256_GCM", "AES_CMAC", "AES_GMAC",
    "AUTH_PROTOCOLS", "AnonymousAuthenticator", "AuthenticationFailed", "Authenticator",
    "authenticator", "check_auth_protocol", "DecryptError", "HMAC_SHA256", "kerberos_available",
    "NtlmWithoutIntegrity", "PreauthHash", "SessionKeys",
    "Smb1Signer", "Smb2Signer", "TRANSFORM_HEADER_SIZE", "TransformCipher",
    "derive_session_keys", "gmac_nonce", "smb3kdf", "transform_session_id",
]
