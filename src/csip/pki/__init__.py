"""Certificates and identities for IEEE 2030.5.

``identity`` (LFDI, SFDI, PINs; stdlib only), ``checks`` (the 2030.5 leaf rules OpenSSL does
not enforce), ``testpki`` (a TEST-ONLY SERCA -> MCA -> MICA -> device PKI) and ``cli``
(``csip certs ...``). The package root re-exports only the pure identity functions so that
importing it never loads a crypto library.
"""

from csip.pki.identity import (
    check_digit,
    lfdi_from_cert_der,
    normalize_lfdi,
    pin_is_valid,
    sfdi_from_lfdi,
)

__all__ = [
    "check_digit",
    "lfdi_from_cert_der",
    "normalize_lfdi",
    "pin_is_valid",
    "sfdi_from_lfdi",
]
