"""Login sessions and the login rate limit (guide 4.3: remote administration with passwords).

Sessions live in the console's memory only: a restart logs everyone out, and nothing secret is
ever in a URL or on disk.  Each session has its own CSRF token, compared in constant time on every
POST.  Failed logins are counted per client address and per user name; past the limit, logins are
refused (even with the right password) until the lockout has passed.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Session:
    id: str
    user: str
    role: str
    csrf: str
    last: float = field(default_factory=time.monotonic)


class Sessions:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str, role: str) -> Session:
        s = Session(secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(32))
        with self._lock:
            self._expire()
            self._by_id[s.id] = s
        return s

    def get(self, sid: str | None) -> tuple[Session | None, bool]:
        """(session, expired): a known but idle-too-long session is dropped and reported expired."""
        if not sid:
            return None, False
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None, False
            now = time.monotonic()
            if now - s.last > self.timeout:
                del self._by_id[sid]
                return None, True
            s.last = now
            return s, False

    def drop(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [k for k, s in self._by_id.items() if now - s.last > self.timeout]:
            del self._by_id[sid]


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class LoginLimiter:
    def __init__(self, attempts: int, lockout: float) -> None:
        self.attempts = attempts
        self.lockout = lockout
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._fails.get(key, []) if now - t < self.lockout]
        if times:
            self._fails[key] = times
        else:
            self._fails.pop(key, None)
        return times

    def blocked(self, addr: str, user: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.attempts for k in (f"addr:{addr}", f"user:{user}"))

    def failed(self, addr: str, user: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in (f"addr:{addr}", f"user:{user}"):
                self._fails.setdefault(k, []).append(now)
                if len(self._fails) > 100000:  # bounded memory whatever the attacker sends
                    self._fails.pop(next(iter(self._fails)))

    def succeeded(self, addr: str, user: str) -> None:
        with self._lock:
            self._fails.pop(f"user:{user}", None)
