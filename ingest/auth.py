"""Authenticate Okta's deliveries by a shared secret in a header.

Okta ELS sends whatever key/value header the admin typed into "Authorization header (encrypted)". We accept
the secret as `Bearer <secret>` or bare, against several configured secrets so they can be rotated without
downtime. Every comparison is constant-time and every configured secret is compared, so neither timing nor
early exit tells which secret (or how much of one) matched.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping


class Authenticator:
    def __init__(self, tokens: list[str], header: str = "Authorization", disabled: bool = False):
        if not tokens and not disabled:
            raise ValueError("no secret configured: set ELS_AUTH_TOKENS (or ELS_AUTH_DISABLED=1 for development)")
        self.header = header
        self.disabled = disabled
        self._tokens = [t.encode() for t in tokens]

    def check(self, headers: Mapping[str, str]) -> bool:
        if self.disabled:
            return True
        getall = getattr(headers, "getall", None)  # aiohttp's multidict: the header may come several times
        if getall is not None:
            values = getall(self.header, [])
            if len(values) != 1:  # two secrets in one request is not a request Okta sends: refuse, not guess
                return False
            value = values[0]
        else:
            value = headers.get(self.header)
        if not value:
            return False
        value = value.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        candidate = value.encode()
        ok = False
        for token in self._tokens:
            ok |= hmac.compare_digest(candidate, token)
        return ok
