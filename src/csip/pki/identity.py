"""IEEE 2030.5 client identities: LFDI, SFDI and registration PINs.

2030.5 names a client by its certificate, not by anything it says about itself: the Long-form
Device Identifier (LFDI) is the truncated SHA-256 of the DER certificate, and the Short-form
Device Identifier (SFDI) is a shorter, human-typable form of the same hash with a check digit.
Everything here is pure and stdlib-only so that the hot path (one LFDI per TLS connection) and
the domain layer can use it without pulling in a crypto library.
"""

from __future__ import annotations

import hashlib

from csip.errors import InvalidValues

__all__ = [
    "LFDI_HEX_LENGTH",
    "check_digit",
    "lfdi_from_cert_der",
    "normalize_lfdi",
    "pin_is_valid",
    "sfdi_from_lfdi",
]

#: An LFDI is the first 160 bits of the SHA-256 fingerprint, i.e. 40 hex characters.
LFDI_HEX_LENGTH = 40
_LFDI_BYTES = LFDI_HEX_LENGTH // 2
#: The SFDI is built from the first 36 bits of the fingerprint (9 hex characters).
_SFDI_BITS = 36
_HEX_DIGITS = frozenset("0123456789ABCDEF")


def lfdi_from_cert_der(der: bytes) -> str:
    """Return the LFDI of a DER-encoded certificate as 40 uppercase hex characters.

    The hash is over the certificate exactly as sent on the wire (DER), so two encodings of
    "the same" certificate would be two identities; that is what 2030.5 specifies.
    """
    return hashlib.sha256(der).digest()[:_LFDI_BYTES].hex().upper()


def check_digit(n: int) -> int:
    """Return the digit that, appended to ``n``, makes the sum of all digits a multiple of 10.

    2030.5 uses this simple rule (not Luhn) for both the SFDI and the registration PIN, so that
    a person typing either one gets a cheap typo check.
    """
    if n < 0:
        raise InvalidValues(f"check digit needs a non-negative number, got {n}")
    return (10 - sum(int(d) for d in str(n)) % 10) % 10


def normalize_lfdi(s: str) -> str:
    """Return ``s`` as a canonical LFDI (stripped, uppercase) or raise InvalidValues.

    LFDIs arrive from admin requests, URLs and config files in any case; comparing them
    only after normalising avoids two spellings of one device.
    """
    candidate = s.strip().upper()
    if len(candidate) != LFDI_HEX_LENGTH or not set(candidate) <= _HEX_DIGITS:
        raise InvalidValues(
            f"an LFDI is exactly {LFDI_HEX_LENGTH} hexadecimal characters, got {s!r}"
        )
    return candidate


def sfdi_from_lfdi(lfdi: str) -> int:
    """Return the SFDI for an LFDI: its first 36 bits in decimal followed by a check digit."""
    canonical = normalize_lfdi(lfdi)
    prefix = int(canonical[: _SFDI_BITS // 4], 16)
    return prefix * 10 + check_digit(prefix)


def pin_is_valid(pin: int) -> bool:
    """Tell whether ``pin`` is a well-formed 2030.5 registration PIN.

    A PIN is six decimal digits (leading zeros allowed) whose last digit is the check digit of
    the first five; checking the form first turns typos into a clear error instead of a
    registration mismatch.
    """
    if not 0 <= pin <= 999_999:
        return False
    first_five, last = divmod(pin, 10)
    return check_digit(first_five) == last
