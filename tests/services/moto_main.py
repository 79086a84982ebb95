"""Entry point of the moto server process that MotoServer starts (`python -m` this module).

moto verifies SigV4 signatures when INITIAL_NO_AUTH_ACTION_COUNT is set (MotoServer sets
it to 0), but it signs its own copy of the request with whatever region the client put in
the credential scope, so a request signed for the wrong region still passes. Real STS
refuses it ("Credential should be scoped to a valid region"), and Vault's AWS auth relies
on that, so this process adds the check before moto's own. The region comes from
MOTO_SIGNING_REGION; IAM, being global, is always signed for us-east-1. STS's signature
errors go out as text/xml, as AWS sends them (Vault checks the type before the status).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from moto.core.exceptions import SignatureDoesNotMatchError
from moto.iam.access_control import IAMRequest
from moto.server import main as moto_main

from tests.services.moto_sts import GLOBAL_SERVICE_REGIONS


class WrongRegionError(SignatureDoesNotMatchError):
    def __init__(self, region: str) -> None:
        # Skip SignatureDoesNotMatchError's fixed message, keep its code and status.
        super(SignatureDoesNotMatchError, self).__init__(
            "SignatureDoesNotMatch",
            f"Credential should be scoped to a valid region, not '{region}'. ",
        )


def install_region_check(region: str) -> None:
    moto_check_signature = IAMRequest.check_signature

    def check_signature(self: IAMRequest) -> None:
        expected = GLOBAL_SERVICE_REGIONS.get(self._service, region)
        if self._region != expected:
            raise WrongRegionError(self._region)
        moto_check_signature(self)

    IAMRequest.check_signature = check_signature  # type: ignore[method-assign]


def install_xml_errors() -> None:
    """Send the query APIs' errors as text/xml, as STS and IAM do: moto's server sends its
    signature errors as text/html, and Vault's AWS auth reads an answer of any other type
    than text/xml as "body of GetCallerIdentity is invalid", hiding AWS's error code."""
    from moto.server import DomainDispatcherApplication

    dispatch = DomainDispatcherApplication.__call__

    def call(self: Any, environ: Any, start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            if int(status.split()[0]) >= 400:
                headers = [(k, "text/xml" if k.lower() == "content-type"
                            and v.startswith("text/html") else v) for k, v in headers]
            return start_response(status, headers, *exc)

        return dispatch(self, environ, start)

    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]


if __name__ == "__main__":
    install_region_check(os.environ.get("MOTO_SIGNING_REGION", "us-east-1"))
    install_xml_errors()
    moto_main(sys.argv[1:])
