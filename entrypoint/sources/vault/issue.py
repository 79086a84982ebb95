"""Writes that issue: ``vault:pki/issue/web#certificate?write&common_name=app.internal``
and ``secret("pki/issue/web", common_name="app.internal")`` in templates.

One POST per distinct (path, parameters) per generation, so the certificate, key and
chain a template writes come from one answer. PKI's answer carries ``expiration``, so it
is ``Refresh.TTL``: the engine issues a successor at ``replace_fraction`` of its life.

With ``issue_cache_dir`` set, a lease-less answer holding a certificate is kept there
(0600, written atomically, never through a link), and the first issue of a process
reuses it while its certificate, read from the PEM itself, is still short of the moment
it would have been replaced: a restart does not mint a new certificate. Later issues of
the same process (renewals, ``entrypoint rotate``) always write.

``entrypoint check`` without ``--issue`` reads the PKI role instead of issuing and says
whether it would accept the request (:meth:`Issuer.check`). Parameter values are never
logged; messages name the path (and a refused common name, which is not secret).
"""

from __future__ import annotations

import base64
import calendar
import fnmatch
import hashlib
import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrypoint.errors import ConfigError, PermissionDenied, SecretNotFound
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Refresh, to_secrets
from entrypoint.sources.vault import kv

if TYPE_CHECKING:
    from entrypoint.sources.vault.source import VaultSource

Params = tuple[tuple[str, str], ...]
# What PKI's issue answers; check without --issue hands these to templates as placeholders.
ANSWER_KEYS = ("certificate", "issuing_ca", "ca_chain", "private_key", "private_key_type",
               "serial_number", "expiration")
PLACEHOLDER = "<not issued: entrypoint check --issue>"
# Where a reference may write: the endpoints of engines that issue a new credential on a
# write, by mount type and the first segment after the mount. Anything else (a KV secret,
# a mount Vault would not name, an engine's config or keys) is refused: a typo must not
# overwrite a secret or reconfigure Vault.
ISSUING = {"pki": ("issue", "sign", "sign-verbatim"), "ssh": ("issue", "sign", "creds"),
           "aws": ("sts", "creds"), "gcp": ("roleset", "static-account",
                                             "impersonated-account"),
           "azure": ("creds",), "kubernetes": ("creds",)}
CACHE_LIMIT = 1 << 20  # a cached answer is a few KiB: anything larger was not written by us


class Issuer:
    """The writes of one VaultSource, and the cache of issued certificates."""

    def __init__(self, cache_dir: str = "", replace_fraction: float = 0.8) -> None:
        self.cache_dir = cache_dir
        self.replace_fraction = replace_fraction
        self._served: set[tuple[str, Params]] = set()
        self._lock = threading.Lock()

    def issue(self, source: VaultSource, path: str, params: Params) -> Fetched:
        path = path.strip("/")
        mount = writable_mount(source, path)
        with self._lock:
            first = (path, params) not in self._served
            self._served.add((path, params))
        cache = self._cache_file(path, params)
        if first and cache is not None:
            reused = self._reuse(source, cache, path, params)
            if reused is not None:
                return reused
        started = time.monotonic()
        issued_at = time.time()
        nonce = os.urandom(8).hex()
        response = source._authed(f"issue at {path}", path, lambda: (
            source.client.api.post(kv.api_path(path), dict(params),
                                   headers={kv.FRESH_HEADER: nonce})))
        fetched = answer_fetched(path, mount, response, started)
        if fetched.lease_id:
            source._hold(path, fetched.lease_id)
        data = response.get("data") if isinstance(response, dict) else None
        if isinstance(data, dict) and isinstance(data.get("certificate"), str):
            try:
                until = _iso(validity(data["certificate"])[1])
            except ValueError:
                until = "an unreadable date"
            source.log.info("vault: issued a certificate at %s, valid until %s", path, until)
            if cache is not None and not fetched.lease_id:
                self._keep(source, cache, path, params, issued_at, data)
        return fetched

    def check(self, source: VaultSource, path: str, params: Params) -> tuple[str, Fetched]:
        """Whether the PKI role behind ``path`` would accept ``params``, without issuing."""
        path = path.strip("/")
        mount = writable_mount(source, path)
        rest = path[len(mount.path):]
        placeholder = Fetched(data={k: Secret(PLACEHOLDER) for k in ANSWER_KEYS},
                              kind="pki", refresh=Refresh.NEVER)
        if mount.type != "pki" or not rest.startswith("issue/"):
            raise ConfigError(f"vault:{path}: check cannot tell whether this write would be "
                              f"accepted without making it ({mount.label})",
                              hint="entrypoint check --issue makes the write")
        role = rest[len("issue/"):]
        try:
            response = source._authed(f"read of PKI role {role}", path, lambda: (
                source.client.api.get(kv.api_path(f"{mount.path}roles/{role}"))))
        except PermissionDenied:
            return (f"role {role} not readable by this token: request not validated",
                    placeholder)
        except SecretNotFound:
            raise SecretNotFound(f"vault:{path}: PKI role {role} does not exist on "
                                 f"{mount.label}") from None
        data = response.get("data") if isinstance(response, dict) else None
        verdict = role_verdict(data if isinstance(data, dict) else {}, dict(params))
        if verdict.startswith("refused: "):
            raise ConfigError(f"vault:{path}: role {role} would refuse the request: "
                              f"{verdict[len('refused: '):]}",
                              hint="nothing was issued; change the parameters or the role")
        return f"role {role} {verdict}", placeholder

    # -- the cache ----------------------------------------------------------------------
    def _cache_file(self, path: str, params: Params) -> Path | None:
        if not self.cache_dir:
            return None
        digest = hashlib.sha256(json.dumps([path, params]).encode()).hexdigest()[:32]
        return Path(self.cache_dir) / f"issued-{digest}.json"

    def _reuse(self, source: VaultSource, cache: Path, path: str,
               params: Params) -> Fetched | None:
        from entrypoint.render.safepath import read_file, reason, trusted

        try:
            folder = os.stat(cache.parent)
        except OSError:
            return None
        if not trusted(folder):
            # A folder others can write: what is read there could be anyone's, and a CA
            # planted beside the certificate could reach a trust bundle. Issue anew.
            return _not_reused(source, path, f"issue_cache_dir {cache.parent} is writable "
                                             "by others than the entrypoint's user")
        try:
            raw = read_file(cache)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return _not_reused(source, path, f"cannot be read: {reason(exc)}")
        try:
            data, not_after, threshold = cached_answer(raw, path, params,
                                                       self.replace_fraction)
        except ValueError as exc:
            return _not_reused(source, path, str(exc))
        now = time.time()
        if now >= threshold:
            return _not_reused(source, path, f"it is past {self.replace_fraction:g} of its "
                                             f"life (valid until {_iso(not_after)})")
        source.log.info("vault: reusing the certificate of %s kept in issue_cache_dir, "
                        "valid until %s", path, _iso(not_after))
        # Its life as the engine counts it (from fetched_at, ttl long) puts the
        # replacement where the issuing process would have made it: at ``threshold``.
        life = (not_after - threshold) / (1.0 - self.replace_fraction)
        return Fetched(data=to_secrets(_joined(data)), kind="pki", refresh=Refresh.TTL,
                       ttl=life, fetched_at=time.monotonic() - (now - (not_after - life)))

    def _keep(self, source: VaultSource, cache: Path, path: str, params: Params,
              issued_at: float, data: dict[str, Any]) -> None:
        from entrypoint.errors import RenderError
        from entrypoint.render import atomic

        body = json.dumps({"path": path, "params": [list(p) for p in params],
                           "issued_at": issued_at, "data": data}).encode()
        try:
            atomic.commit(atomic.stage(cache, body, 0o600), cache)
        except RenderError as exc:
            source.log.warning("vault: cannot keep the certificate of %s in issue_cache_dir "
                               "(%s); the next start issues a new one", path, exc)


def writable_mount(source: VaultSource, path: str) -> kv.Mount:
    """The mount of ``path``, refused when a reference must never write there."""
    mount = source.mount_of(path)
    first = path[len(mount.path):].partition("/")[0]
    if mount.version or first not in ISSUING.get(mount.type, ()):
        raise ConfigError(f"vault:{path}: ?write (or secret() with parameters) would write "
                          f"to {mount.label}; references write only to issuing endpoints "
                          "such as PKI's issue/", hint="to read the path, drop the parameters")
    return mount


def answer_fetched(path: str, mount: kv.Mount, response: Any, started: float) -> Fetched:
    """A write's answer: lists of PEM blocks (``ca_chain``) as one PEM text; never polled
    (a re-read of an issuing path would be a different request)."""
    data = response.get("data") if isinstance(response, dict) else None
    if isinstance(data, dict):
        response = {**response, "data": _joined(data)}
    fetched = kv.leased_fetched(path, mount, response, started)
    if fetched.refresh is Refresh.TTL:
        return replace(fetched, kind="pki" if "certificate" in fetched.data else "ttl")
    if fetched.refresh is Refresh.POLL:
        return replace(fetched, kind="written", refresh=Refresh.NEVER)
    return fetched


def _joined(data: dict[str, Any]) -> dict[str, Any]:
    return {k: "\n".join(v) if isinstance(v, list) and all(isinstance(x, str) for x in v)
            else v for k, v in data.items()}


def cached_answer(raw: bytes, path: str, params: Params,
                  fraction: float) -> tuple[dict[str, Any], float, float]:
    """(data, NotAfter, reuse-until), all wall clock; ValueError says why it is unusable.

    Reuse ends where the process that issued it would have replaced it: ``fraction`` of
    the way from its issue (clamped into the certificate's validity) to its NotAfter."""
    if len(raw) > CACHE_LIMIT:
        raise ValueError("it is larger than any answer")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("it is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ValueError("it holds no answer")
    if body.get("path") != path or body.get("params") != [list(p) for p in params]:
        raise ValueError("it was issued for another request")
    data: dict[str, Any] = body["data"]
    cert, key = data.get("certificate"), data.get("private_key")
    if not isinstance(cert, str) or not isinstance(key, str) or not key:
        raise ValueError("it holds no certificate and key")
    data = {k: v for k, v in data.items() if k in ANSWER_KEYS}  # nothing else is trusted
    not_before, not_after = validity(cert)
    expiration = data.get("expiration")
    if not isinstance(expiration, int | float) or abs(expiration - not_after) > 1:
        raise ValueError("its expiration disagrees with its certificate")
    # From NotBefore (Vault backdates it 30 s), not from the file's issued_at: a cache the
    # app can write must not move its own renewal later.
    return data, not_after, not_before + fraction * (not_after - not_before)


def _not_reused(source: VaultSource, path: str, why: str) -> Fetched | None:
    source.log.info("vault: the certificate of %s kept in issue_cache_dir is not reused: "
                    "%s; issuing a new one", path, why)
    return None


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


# -- X.509 validity, read from the DER (no dependency: the stdlib cannot parse a PEM) --

def validity(pem: str) -> tuple[float, float]:
    """(NotBefore, NotAfter) of the first certificate in ``pem``, Unix time."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("its certificate is not PEM")
    try:
        der = base64.b64decode("".join(pem[start + len(begin):stop].split()), validate=True)
        _, body, _ = _tlv(der, 0)           # Certificate
        _, at, _ = _tlv(der, body)          # tbsCertificate
        tag, _, after = _tlv(der, at)
        if tag == 0xA0:                     # [0] version
            at = after
        for _ in range(3):                  # serialNumber, signature, issuer
            _, _, at = _tlv(der, at)
        tag, inner, _ = _tlv(der, at)       # validity
        if tag != 0x30:
            raise ValueError
        not_before, _, next_at = _time(der, inner)
        not_after, _, _ = _time(der, next_at)
    except (ValueError, IndexError):
        raise ValueError("its certificate cannot be parsed") from None
    return not_before, not_after


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, where the content starts, where the element ends)."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError
        length = int.from_bytes(der[at:at + count], "big")
        at += count
    if at + length > len(der):
        raise ValueError
    return tag, at, at + length


def _time(der: bytes, at: int) -> tuple[float, int, int]:
    tag, start, end = _tlv(der, at)
    text = der[start:end].decode("ascii")
    if tag == 0x17 and len(text) == 13 and text.endswith("Z"):  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = str(2000 + year if year < 50 else 1900 + year) + text[2:]
    elif not (tag == 0x18 and len(text) == 15 and text.endswith("Z")):  # GeneralizedTime
        raise ValueError
    fields = [int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
              int(text[10:12]), int(text[12:14])]
    return float(calendar.timegm((*fields, 0, 0, 0))), start, end


# -- would the role accept it? --------------------------------------------------------

def role_verdict(role: dict[str, Any], params: dict[str, str]) -> str:
    """``refused: why``, or what was found (``allows it``, a capped ttl, what was not
    judged). Follows Vault's name rules for the common cases: allow_any_name,
    allow_localhost, allowed_domains with allow_bare_domains / allow_subdomains /
    allow_glob_domains; templated domains are not judged."""
    names = [params.get("common_name", "")]
    names += [n.strip() for n in params.get("alt_names", "").split(",") if n.strip()]
    notes: list[str] = []
    if not names[0]:
        names.pop(0)
        if role.get("require_cn", True) and params.get("exclude_cn_from_sans") is None:
            return "refused: no common_name, and the role requires one"
    domains = [str(d) for d in role.get("allowed_domains") or []]
    if any("{{" in d for d in domains):
        notes.append("templated allowed_domains not judged")
    else:
        for name in names:
            if not _name_allowed(name, role, domains):
                rules = ", ".join(f"{flag}={str(bool(role.get(flag))).lower()}" for flag in
                                  ("allow_bare_domains", "allow_subdomains",
                                   "allow_glob_domains"))
                return (f"refused: name {name} is not allowed (allowed_domains: "
                        f"{', '.join(domains) or 'none'}; {rules})")
    max_ttl = role.get("max_ttl")
    if "ttl" in params and isinstance(max_ttl, int | float) and max_ttl > 0:
        from entrypoint.config.values import parse_duration

        try:
            asked = parse_duration(params["ttl"])
        except ValueError:
            return f"refused: ttl {params['ttl']!r} is not a duration"
        if asked > max_ttl:
            notes.append(f"ttl {params['ttl']} capped to the role's max_ttl {max_ttl:g}s")
    return "allows it" + (f" ({'; '.join(notes)})" if notes else "")


def _name_allowed(name: str, role: dict[str, Any], domains: list[str]) -> bool:
    if role.get("allow_any_name"):
        return True
    if name == "localhost" and role.get("allow_localhost", True):
        return True
    for domain in domains:
        if role.get("allow_bare_domains") and name == domain:
            return True
        if role.get("allow_subdomains") and name.endswith("." + domain.lstrip("*.")):
            return True
        if role.get("allow_glob_domains") and fnmatch.fnmatchcase(name, domain):
            return True
    return False
