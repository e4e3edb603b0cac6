from __future__ import annotations

import hashlib

import pytest

from csip.errors import InvalidValues
from csip.pki.identity import (
    check_digit,
    lfdi_from_cert_der,
    normalize_lfdi,
    pin_is_valid,
    sfdi_from_lfdi,
)

# IEEE 2030.5-2018 §6.3.4 worked example.
FINGERPRINT = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5349E2AD745672ED145EE213A"
LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
SFDI = 167261211391


def test_lfdi_is_the_leftmost_160_bits_of_the_sha256_fingerprint() -> None:
    der = b"\x30\x03\x02\x01\x01"
    fingerprint = hashlib.sha256(der).hexdigest().upper()
    assert lfdi_from_cert_der(der) == fingerprint[:40]
    assert FINGERPRINT[:40] == LFDI


def test_sfdi_matches_the_standard_example() -> None:
    assert sfdi_from_lfdi(LFDI) == SFDI
    assert sfdi_from_lfdi(LFDI.lower()) == SFDI


@pytest.mark.parametrize(
    ("number", "digit"),
    [(16726121139, 1), (11111, 5), (0, 0), (9, 1), (19, 0), (99999, 5)],
)
def test_check_digit_makes_the_digit_sum_a_multiple_of_ten(number: int, digit: int) -> None:
    assert check_digit(number) == digit
    assert sum(int(d) for d in f"{number}{digit}") % 10 == 0


def test_check_digit_rejects_negative_numbers() -> None:
    with pytest.raises(InvalidValues):
        check_digit(-1)


def test_normalize_lfdi_strips_and_uppercases() -> None:
    assert normalize_lfdi(f"  {LFDI.lower()}\n") == LFDI


@pytest.mark.parametrize(
    "bad",
    ["", LFDI[:-1], LFDI + "0", "G" + LFDI[1:], LFDI[:20] + " " + LFDI[21:], "0x" + LFDI[2:]],
)
def test_normalize_lfdi_rejects_anything_but_40_hex_digits(bad: str) -> None:
    with pytest.raises(InvalidValues):
        normalize_lfdi(bad)


def test_sfdi_rejects_a_bad_lfdi() -> None:
    with pytest.raises(InvalidValues):
        sfdi_from_lfdi("not an lfdi")


@pytest.mark.parametrize(
    ("pin", "valid"),
    [
        (111115, True),
        (111116, False),
        (0, True),  # "000000"
        (5, False),  # "000005"
        (123453, False),
        (123455, True),
        (-1, False),
        (1_000_000, False),
    ],
)
def test_pin_is_valid(pin: int, valid: bool) -> None:
    assert pin_is_valid(pin) is valid
