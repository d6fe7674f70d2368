"""Who may use the dashboard, and how a browser proves it: the token, sessions and CSRF tokens.

Why it exists: whoever reaches the dashboard can pause queues, cancel jobs
and stop partitions. On loopback (the default) reaching it means being on the
machine. Anywhere else a secret is required, or the dashboard does not start
(`check_bind`): a token of at least `MIN_TOKEN_LENGTH` characters, read from a
file (`rogerctl dashboard --token-file PATH`), never from the command line,
where `ps` would show it.

A client proves it knows the token in one of two ways:

- `Authorization: Bearer TOKEN` on every request (scripts, curl);
- a browser signs in once on `/login` (a form; the token never goes in a URL)
  and gets a session cookie: `SID.MAC`, a random session id and its HMAC
  under the token (HttpOnly, SameSite=Strict). Nothing is stored server side:
  any dashboard started with the same token accepts the cookie, and changing
  the token signs every browser out.

Every comparison is `hmac.compare_digest` (constant time). A browser session's
actions must also carry `X-Roger-CSRF`, a per-session value (the HMAC of its
session id) that the page gets embedded in its HTML: a page on another site
can make the browser send the cookie, but cannot read the page to learn the
value, and a cross-site form cannot set a header at all.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

SESSION_COOKIE = "roger_dashboard"
"""The name of the session cookie."""
CSRF_HEADER = "X-Roger-CSRF"
"""The header a browser session's actions carry its CSRF token in."""
MIN_TOKEN_LENGTH = 16
"""Characters a token must have at least."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, no port) is this machine's loopback."""
    host = host.lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str | Path) -> str:
    """The token in the file `path` (surrounding whitespace ignored); ConfigError naming
    the file if it cannot be read or the token is too short."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the dashboard token from {path}: {e}") from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"the dashboard token in {path} has {len(token)} characters; it needs at least"
            f" {MIN_TOKEN_LENGTH} (make one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


@dataclass(frozen=True)
class Access:
    """The dashboard's access rules: open (no token, loopback only) or token-protected."""

    token: str | None = None
    """The shared secret; None: no authentication (allowed on loopback only)."""

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"a dashboard token needs at least {MIN_TOKEN_LENGTH} characters")

    @property
    def required(self) -> bool:
        """Whether requests must prove they know the token."""
        return self.token is not None

    def check_bind(self, host: str) -> None:
        """ConfigError, naming the fix, for a non-loopback `host` without a token."""
        if not self.required and not is_loopback(host):
            raise ConfigError(
                f"refusing to serve the dashboard on {host} without authentication: anyone who can"
                " reach it could pause queues and cancel jobs. Give it a token with --token-file PATH"
                " (a file holding a secret of at least 16 characters), or listen on 127.0.0.1"
                " and reach it through an SSH tunnel"
            )

    def bearer(self, authorization: str) -> bool:
        """Whether an `Authorization` header value is `Bearer TOKEN` with the right token."""
        scheme, _, value = authorization.partition(" ")
        if self.token is None or scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self.token.encode())

    def token_matches(self, candidate: str) -> bool:
        """Whether `candidate` (typed in the login form) is the token."""
        return self.token is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def new_session(self) -> str:
        """A fresh session cookie value, `SID.MAC`."""
        sid = secrets.token_urlsafe(18)
        return f"{sid}.{self._mac('session', sid)}"

    def session(self, cookie: str | None) -> str | None:
        """The session id of a cookie value this token signed, else None."""
        if self.token is None or not cookie:
            return None
        sid, _, mac = cookie.partition(".")
        if not sid or not hmac.compare_digest(mac.encode(), self._mac("session", sid).encode()):
            return None
        return sid

    def csrf(self, sid: str) -> str:
        """The CSRF token of session `sid`."""
        return self._mac("csrf", sid)

    def csrf_matches(self, sid: str, candidate: str) -> bool:
        """Whether `candidate` is the CSRF token of session `sid`."""
        return hmac.compare_digest(candidate.encode(), self.csrf(sid).encode())

    def _mac(self, purpose: str, sid: str) -> str:
        assert self.token is not None
        message = f"roger-dashboard:{purpose}:{sid}".encode()
        return hmac.new(self.token.encode(), message, hashlib.sha256).hexdigest()
