"""Secrets: several for rotation, Bearer or bare, constant-time, nothing accepted by accident."""

import pytest

from ingest.auth import Authenticator


def test_refuses_to_exist_without_a_secret_unless_disabled():
    with pytest.raises(ValueError, match="ELS_AUTH_TOKENS"):
        Authenticator([])
    assert Authenticator([], disabled=True).check({})


@pytest.mark.parametrize("value,ok", [
    ("Bearer s3cret-one", True), ("bearer s3cret-one", True), ("s3cret-one", True), ("  s3cret-two ", True),
    ("Bearer s3cret-two", True), ("", False), ("Bearer ", False), ("s3cret-on", False), ("s3cret-one1", False),
    ("S3CRET-ONE", False), ("Basic s3cret-one", False), ("Bearer s3cret-one,s3cret-two", False),
])
def test_rotation_and_formats(value, ok):
    auth = Authenticator(["s3cret-one", "s3cret-two"])
    assert auth.check({"Authorization": value}) is ok


def test_custom_header():
    auth = Authenticator(["tok"], header="X-Okta-Secret")
    assert auth.check({"X-Okta-Secret": "tok"})
    assert not auth.check({"Authorization": "Bearer tok"})


def test_the_header_twice_is_refused_even_when_one_is_right():
    from multidict import CIMultiDict

    auth = Authenticator(["s3cret-one"])
    assert auth.check(CIMultiDict([("Authorization", "Bearer s3cret-one")]))
    assert not auth.check(CIMultiDict([("Authorization", "Bearer s3cret-one"), ("Authorization", "Bearer x")]))
    assert not auth.check(CIMultiDict([("Authorization", "Bearer s3cret-one"), ("authorization", "s3cret-one")]))
