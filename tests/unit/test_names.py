"""Repository names and tags: the spec's grammar, the length limit, no path tricks."""

from __future__ import annotations

import pytest

from ociregistry.core.errors import NameInvalid, TagInvalid
from ociregistry.core.names import MAX_NAME_LENGTH, validate_name, validate_tag


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "library/alpine",
        "my-org/my_image",
        "a/b/c/d/e",
        "foo__bar",
        "foo---bar",
        "foo.bar",
        "0",
        "123/456",
        "a" * MAX_NAME_LENGTH,
    ],
)
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "UPPER",
        "Library/alpine",
        "-leading",
        "trailing-",
        "_leading",
        "a..b",
        "a___b",  # only one or two underscores
        "a_-b",
        "a/",
        "/a",
        "a//b",
        "a b",
        "a:b",
        "a@b",
        "a%2fb",
        "é",
        # path tricks
        ".",
        "..",
        "../etc",
        "a/../b",
        "a/./b",
        "a/..",
        "./a",
        "a\\b",
        "..\\..\\windows",
        "a\x00b",
        "a\n",
        "a\nb",
        "\na",
        "a\r",
        "a\t",
    ],
)
def test_invalid_names(name):
    with pytest.raises(NameInvalid) as info:
        validate_name(name)
    assert info.value.code == "NAME_INVALID"
    assert info.value.status == 400


def test_length_limit_is_255():
    assert validate_name("a" * 255)
    assert validate_name("/".join(["abc"] * 63) + "/abc")  # 255 with slashes
    with pytest.raises(NameInvalid):
        validate_name("a" * 256)
    with pytest.raises(NameInvalid):
        validate_name("/".join(["abcd"] * 52))  # 259


def test_error_detail_is_bounded_for_huge_names():
    with pytest.raises(NameInvalid) as info:
        validate_name("a" * 100_000)
    assert len(info.value.detail["name"]) <= 300


@pytest.mark.parametrize(
    "tag", ["latest", "v1.0.0", "1", "_", "A_b-C.d", "a" * 128, "sha256-" + "a" * 64 + ".sig"]
)
def test_valid_tags(tag):
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    ["", "a" * 129, ".hidden", "-x", "a/b", "a:b", "..", "v1\n", "v 1", "v1+x", "é"],
)
def test_invalid_tags(tag):
    with pytest.raises(TagInvalid) as info:
        validate_tag(tag)
    assert info.value.status == 400
