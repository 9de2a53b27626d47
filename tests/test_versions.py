"""Release candidate versions and commit hashes, as the API and tag pushes receive them."""

from __future__ import annotations

import pytest

from bot.domain.versions import (
    MAX_RC_NUMBER,
    MAX_RELEASE_VERSION_LENGTH,
    RcVersion,
    normalize_commit_sha,
    parse_rc_version,
)


@pytest.mark.parametrize(
    ("text", "release", "number"),
    [
        ("v1.4.0-rc2", "v1.4.0", 2),
        ("2026.11.28-rc10", "2026.11.28", 10),
        ("1.0-rc0", "1.0", 0),
        # The last `-rc<N>` is the candidate number; the rest is the release.
        ("release-1-rc3", "release-1", 3),
        ("v2-rc-rc4", "v2-rc", 4),
        ("v1.0.0+build.5-rc1", "v1.0.0+build.5", 1),
        ("версия-rc1", "версия", 1),
    ],
)
def test_a_valid_version_splits_into_release_and_number(
    text: str, release: str, number: int
) -> None:
    assert parse_rc_version(text) == RcVersion(text=text, release=release, number=number)


def test_a_candidate_number_has_one_spelling() -> None:
    # rc01 and rc1 would be two texts for candidate 1: the one without the zero is the only one.
    assert parse_rc_version("v30-rc01") is None
    assert parse_rc_version("v30-rc00") is None
    assert parse_rc_version("v30-rc1") == RcVersion(text="v30-rc1", release="v30", number=1)
    assert parse_rc_version("v30-rc0") == RcVersion(text="v30-rc0", release="v30", number=0)


def test_the_longest_release_and_the_largest_number_are_accepted() -> None:
    release = "r" * MAX_RELEASE_VERSION_LENGTH
    parsed = parse_rc_version(f"{release}-rc{MAX_RC_NUMBER}")
    assert parsed is not None
    assert parsed.release == release
    assert parsed.number == MAX_RC_NUMBER


@pytest.mark.parametrize(
    "text",
    [
        "",
        "v1.4.0",  # no -rc
        "v1.4.0-rc",  # -rc without digits
        "v1.4.0-rcX",
        "v1.4.0-rc-1",
        "v1.4.0-rc1a",
        "v1.4.0-RC1",
        "-rc1",  # empty release
        "rc1",
        "v1 -rc1",  # whitespace
        " v1-rc1",
        "v1-rc1\n",
        "v1/2-rc1",  # versions appear in URL paths
        "v1\x00-rc1",  # control characters
        "v1\t-rc1",
        "v1\x1b-rc1",
        "v1\x7f-rc1",
        "r" * (MAX_RELEASE_VERSION_LENGTH + 1) + "-rc1",  # over-long release
        f"v1-rc{MAX_RC_NUMBER + 1}",  # huge N
        "v1-rc" + "9" * 400,
        "v1-rc\u0661",  # an Arabic-Indic digit is not a decimal digit here
        "v30-rc01",  # a leading zero: rc1 is the one spelling of candidate 1
        "v1.0.0-rc1-rc2",  # the release part is itself a candidate version
        "v2-rc1-rc4",
        "..-rc1",  # the release part starts with a letter or a digit
        ".-rc1",
        "-x-rc1",
        "_v1-rc1",
        "+1-rc1",
    ],
)
def test_an_invalid_version_is_refused(text: str) -> None:
    assert parse_rc_version(text) is None


def test_a_commit_sha_is_stored_lower_case() -> None:
    sha = "0123456789abcdef0123456789ABCDEF01234567"
    assert normalize_commit_sha(sha) == sha.lower()
    assert normalize_commit_sha("a" * 40) == "a" * 40


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a" * 39,
        "a" * 41,
        "g" * 40,
        "a" * 39 + "\n",
        "a" * 40 + "\n",
        " " + "a" * 40,
        "0x" + "a" * 38,
        "abc1234",  # a short SHA is not enough
    ],
)
def test_anything_but_40_hex_digits_is_not_a_commit(text: str) -> None:
    assert normalize_commit_sha(text) is None
