"""The moto stand-in checks signatures the way STS does, so a forged login cannot pass."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.services.moto_sts import MotoServer, create_iam_user, unique_user_name


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    response = excinfo.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def test_caller_identity_signed_with_the_users_keys_is_that_user(moto_sts: MotoServer) -> None:
    name = unique_user_name()
    key_id, secret, arn = create_iam_user(moto_sts, name)
    assert arn == f"arn:aws:iam::123456789012:user/{name}"
    identity = moto_sts.client("sts", key_id, secret).get_caller_identity()
    assert identity["Arn"] == arn
    assert identity["Account"] == "123456789012"


def test_a_wrong_secret_key_is_refused(moto_sts: MotoServer) -> None:
    key_id, secret, _ = create_iam_user(moto_sts, unique_user_name())
    # Its last character changed: "A" only where it is not one already (1 key in 64 ends
    # in "A", and that "wrong" secret was the right one: seen once in a CI run).
    wrong = secret[:-1] + ("B" if secret.endswith("A") else "A")
    assert wrong != secret
    with pytest.raises(ClientError) as excinfo:
        moto_sts.client("sts", key_id, wrong).get_caller_identity()
    status, code, _ = error_of(excinfo)
    assert (status, code) == (403, "SignatureDoesNotMatch")


def test_another_users_secret_is_refused(moto_sts: MotoServer) -> None:
    key_id, _, _ = create_iam_user(moto_sts, unique_user_name())
    _, other_secret, _ = create_iam_user(moto_sts, unique_user_name())
    with pytest.raises(ClientError) as excinfo:
        moto_sts.client("sts", key_id, other_secret).get_caller_identity()
    assert error_of(excinfo)[:2] == (403, "SignatureDoesNotMatch")


def test_a_signature_for_another_region_is_refused(moto_sts: MotoServer) -> None:
    key_id, secret, _ = create_iam_user(moto_sts, unique_user_name())
    with pytest.raises(ClientError) as excinfo:
        moto_sts.client("sts", key_id, secret, region="eu-west-1").get_caller_identity()
    status, code, message = error_of(excinfo)
    assert (status, code) == (403, "SignatureDoesNotMatch")
    assert "eu-west-1" in message


def test_an_unknown_access_key_is_refused(moto_sts: MotoServer) -> None:
    _, secret, _ = create_iam_user(moto_sts, unique_user_name())
    with pytest.raises(ClientError) as excinfo:
        moto_sts.client("sts", "AKIAUNKNOWN000000000", secret).get_caller_identity()
    assert error_of(excinfo)[:2] == (403, "InvalidClientTokenId")


def test_iam_policies_apply_to_a_plain_user(moto_sts: MotoServer) -> None:
    key_id, secret, arn = create_iam_user(moto_sts, unique_user_name())
    with pytest.raises(ClientError) as excinfo:
        moto_sts.client("iam", key_id, secret).list_users()
    status, code, message = error_of(excinfo)
    assert (status, code) == (403, "AccessDenied")
    assert arn in message


def test_a_server_for_another_region_wants_that_region() -> None:
    with MotoServer(region="eu-central-1") as server:
        key_id, secret, arn = create_iam_user(server, "regional")
        assert server.client("sts", key_id, secret).get_caller_identity()["Arn"] == arn
        with pytest.raises(ClientError) as excinfo:
            server.client("sts", key_id, secret, region="us-east-1").get_caller_identity()
        assert error_of(excinfo)[:2] == (403, "SignatureDoesNotMatch")
