"""A certificate reused from issue_cache_dir after a restart is replaced where the process
that issued it would have replaced it: at replace_fraction of its life from its issue, not
of what is left at the restart."""

from __future__ import annotations

import datetime
import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from entrypoint.rotation.timing import LeaseTimes, replace_at_life
from entrypoint.sources.base import Refresh
from entrypoint.sources.vault.issue import Issuer

x509 = pytest.importorskip("cryptography.x509", reason="cryptography makes the test's "
                           "certificate (a test dependency through moto)")


def certificate(not_before: float, not_after: float) -> tuple[str, str]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.internal")])
    utc = datetime.UTC
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(datetime.datetime.fromtimestamp(not_before, utc))
            .not_valid_after(datetime.datetime.fromtimestamp(not_after, utc))
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return pem, private


def test_a_reused_certificate_is_replaced_at_its_original_point(tmp_path: Path) -> None:
    now = time.time()
    issued, not_after = round(now) - 6000, round(now) + 4000  # 10000 s life, 60 % gone
    pem, key = certificate(issued, not_after)
    issuer = Issuer(str(tmp_path), replace_fraction=0.8)
    params = (("common_name", "app.internal"),)
    cache = issuer._cache_file("pki/issue/web", params)
    assert cache is not None
    cache.write_text(json.dumps({"path": "pki/issue/web", "params": [list(p) for p in params],
                                 "issued_at": issued,
                                 "data": {"certificate": pem, "private_key": key,
                                          "expiration": not_after}}))
    source: Any = SimpleNamespace(log=logging.getLogger("test"))
    fetched = issuer._reuse(source, cache, "pki/issue/web", params)
    assert fetched is not None and fetched.refresh is Refresh.TTL
    mono = time.monotonic()
    times = LeaseTimes(fetched.fetched_at, fetched.fetched_at + (fetched.ttl or 0), False)
    # Ends at NotAfter, and the replacement (no jitter) falls at issue + 0.8 * life.
    assert times.expires_at - mono == pytest.approx(not_after - now, abs=2)
    when = replace_at_life(times, mono, 0.8, lambda: 0.5)
    assert when - mono == pytest.approx(issued + 8000 - now, abs=2)  # ~2000 s from now
    # What it was before: 0.8 of what is left would have been ~3200 s from now.
    assert when - mono < 0.8 * (not_after - now) - 1000
