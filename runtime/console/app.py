"""kavconsole's HTTP side: pages, forms and the rules every request goes through (guide 4.3).

Python's threading HTTP server behind an optional TLS wrap: the console is an administration tool
for a handful of people, so a well-understood stdlib server with jinja2 templates (already a
dependency) is enough, and it adds no web framework to the package's dependencies.

Rules applied here, in one place: a session cookie (HttpOnly, SameSite=Strict, Secure under TLS)
that expires when idle; a CSRF token checked on every POST (login included, through a pre-session
cookie); no secret ever in a URL; admin-only changes; each action and each refusal in the audit
log; /metrics open to loopback and [console] MetricsAllow only.
"""

from __future__ import annotations

import asyncio
import csv
import difflib
import io
import ipaddress
import json
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from email.parser import BytesHeaderParser
from email.policy import compat32
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from runtime.config import ConfigError, KavConfig, apply_assignments, load_config, loads_config
from runtime.config import schema as S
from runtime.config.editor import Assignment, normalise, set_values
from runtime.console import accounts, metrics, pamauth, plots
from runtime.console import reload as reload_mod
from runtime.console import status as status_mod
from runtime.console.audit import AuditLog
from runtime.console.sessions import LoginLimiter, Session, Sessions, same_token
from runtime.filter.envelope import Recipient
from runtime.filter.forward import ForwardError, ForwardMailer, Outgoing
from runtime.filter.notify import one_line
from runtime.filter.quarantine import Quarantine, QuarantineError
from runtime.filter.statstore import StatStore
from runtime.fsutil import atomic_write

COOKIE = "kavconsole_session"
PRE_COOKIE = "kavconsole_pre"
MAX_BODY = 1 << 20
QID = re.compile(r"^[0-9a-f]{32}$")
ALT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}\.conf$")
PERIODS = {"day": (86400, 3600), "week": (7 * 86400, 86400), "month": (31 * 86400, 86400)}
REQUEST_TIMEOUT = 30.0  # seconds a client may take to send a request
QUARANTINE_LIST_MAX = 2000  # bounded work per page, whatever the quarantine holds


class Console:
    """State shared by every request: the configuration, accounts, sessions, stores."""

    def __init__(self, config_path: str) -> None:
        self.config_path = str(Path(config_path).resolve())
        self.cfg = load_config(self.config_path)
        c = self.cfg.section("console")
        self.sessions = Sessions(float(c["SessionTimeout"]))
        self.limiter = LoginLimiter(int(c["LoginAttempts"]), float(c["LoginLockout"]))
        self.audit = AuditLog(str(c["AuditLog"]))
        self.password_file = str(c["PasswordFile"])
        self.pam = (str(c["PAMService"]), str(c["PAMAdminGroup"]), str(c["PAMReadOnlyGroup"]))
        self.tls = bool(c["TLSCertificate"] and c["TLSKey"])
        store = c["StatisticsStore"]
        self.store = StatStore(store) if store else None
        nets = []
        for item in c["MetricsAllow"]:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{self.config_path}: [console] MetricsAllow: {item!r} is not an address "
                                 "or network") from None
        self.metrics_allow = nets
        self.lock = threading.Lock()
        self.templates = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                                     autoescape=select_autoescape(default=True, default_for_string=True))

    def reload_config(self) -> None:
        with self.lock:
            self.cfg = load_config(self.config_path)

    def quarantines(self) -> list[Quarantine]:
        seen = dict.fromkeys(str(g.get("QuarantinePath")) for g in self.cfg.groups)
        return [Quarantine(p) for p in seen]


def _fmt(spec: S.Key, value: Any) -> str:
    if value is None:
        return ""
    try:
        return spec.type.format(value)
    except Exception:  # noqa: BLE001 - show what is there rather than fail the page
        return str(value)


class Handler(BaseHTTPRequestHandler):
    server_version = "kavconsole"
    sys_version = ""
    console: Console  # set on the subclass made by make_server

    # -- plumbing -------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the audit log is the record
        pass

    @property
    def addr(self) -> str:
        return str(self.client_address[0])

    def cookies(self) -> dict[str, str]:
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no cookie
            return {}
        return {k: m.value for k, m in jar.items()}

    def cookie_header(self, name: str, value: str, max_age: int | None = None) -> str:
        parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if self.console.tls:
            parts.append("Secure")
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        return "; ".join(parts)

    def send(self, code: int, body: bytes | str, ctype: str = "text/html; charset=utf-8",
             headers: list[tuple[str, str]] | None = None) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy",
                         "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                         "form-action 'self'; frame-ancestors 'self'; base-uri 'none'")
        for k, v in headers or []:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def redirect(self, where: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.send(HTTPStatus.SEE_OTHER, "", headers=[("Location", where), *(headers or [])])

    def page(self, name: str, code: int = 200, session: Session | None = None, **ctx: Any) -> None:
        tpl = self.console.templates.get_template(name)
        self.send(code, tpl.render(session=session, path=urllib.parse.urlsplit(self.path).path, **ctx))

    def query(self) -> dict[str, str]:
        q = urllib.parse.urlsplit(self.path).query
        return {k: v[-1] for k, v in urllib.parse.parse_qs(q, max_num_fields=50).items()}

    def form(self) -> dict[str, list[str]] | None:
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if n < 0 or n > MAX_BODY:
            return None
        body = self.rfile.read(n).decode("utf-8", "replace")
        try:
            return urllib.parse.parse_qs(body, keep_blank_values=True, max_num_fields=5000)
        except ValueError:
            return None

    def session(self) -> tuple[Session | None, bool]:
        return self.console.sessions.get(self.cookies().get(COOKIE))

    def audit(self, action: str, result: str, session: Session | None = None, user: str = "", **kw: object) -> None:
        try:
            self.console.audit.write(action, result, user=session.user if session else user, addr=self.addr, **kw)
        except OSError as exc:
            self.log_error("audit log not writable: %s", exc)

    # -- dispatch -------------------------------------------------------------------------
    GETS = {"/": "get_root", "/login": "get_login", "/status": "get_status", "/statistics": "get_statistics",
            "/statistics.csv": "get_statistics_csv", "/statistics.json": "get_statistics_json",
            "/quarantine": "get_quarantine", "/quarantine/view": "get_quarantine_view", "/config": "get_config",
            "/audit": "get_audit", "/metrics": "get_metrics"}
    POSTS = {"/login": "post_login", "/logout": "post_logout", "/quarantine/action": "post_quarantine",
             "/config/preview": "post_config_preview", "/config/save": "post_config_save",
             "/config/copy": "post_config_copy", "/config/reload": "post_reload"}
    ADMIN_POSTS = {"/quarantine/action", "/config/preview", "/config/save", "/config/copy", "/config/reload"}

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        name = self.GETS.get(path)
        if name is None:
            self.send(404, "not found\n", "text/plain")
            return
        if path in ("/login", "/metrics"):
            getattr(self, name)()
            return
        s, expired = self.session()
        if s is None:
            if expired:
                self.audit("session", "expired")
            self.redirect("/login?expired=1" if expired else "/login")
            return
        getattr(self, name)(s)

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        name = self.POSTS.get(path)
        if name is None:
            self.send(404, "not found\n", "text/plain")
            return
        form = self.form()
        if form is None:
            self.audit(path, "refused: bad request body")
            self.send(400, "bad request\n", "text/plain")
            return
        token = (form.get("csrf") or [""])[-1]
        if path == "/login":
            if not same_token(token, self.cookies().get(PRE_COOKIE)):
                self.audit("login", "refused: missing or wrong CSRF token", user=(form.get("user") or [""])[-1][:64])
                self.send(403, "forged request refused (CSRF token)\n", "text/plain")
                return
            self.post_login(form)
            return
        s, expired = self.session()
        if s is None:
            self.audit(path, "refused: session expired" if expired else "refused: not logged in")
            self.send(403 if not expired else 401, "not logged in (or the session expired)\n", "text/plain")
            return
        if not same_token(token, s.csrf):
            self.audit(path, "refused: missing or wrong CSRF token", s)
            self.send(403, "forged request refused (CSRF token)\n", "text/plain")
            return
        if path in self.ADMIN_POSTS and s.role != "admin":
            self.audit(path, "refused: read-only account", s)
            self.send(403, "your account is read-only\n", "text/plain")
            return
        getattr(self, name)(s, form)

    # -- login ----------------------------------------------------------------------------
    def get_root(self, s: Session) -> None:
        self.redirect("/status")

    def get_login(self, message: str = "", code: int = 200) -> None:
        pre = secrets.token_urlsafe(32)
        if not message and self.query().get("expired"):
            message = "Your session expired; please log in again."
        tpl = self.console.templates.get_template("login.html.j2")
        self.send(code, tpl.render(session=None, csrf=pre, message=message, path="/login"),
                  headers=[("Set-Cookie", self.cookie_header(PRE_COOKIE, pre))])

    def post_login(self, form: dict[str, list[str]]) -> None:
        user = (form.get("user") or [""])[-1][:64]
        password = (form.get("password") or [""])[-1]
        if self.console.limiter.blocked(self.addr, user):
            self.audit("login", "refused: too many failed logins", user=user)
            self.get_login("Too many failed logins: try again later.", 429)
            return
        try:
            acct = accounts.load(self.console.password_file).get(user)
        except (accounts.AccountError, OSError) as exc:
            self.audit("login", f"refused: password file unusable ({exc})", user=user)
            self.get_login("The password file cannot be read; see the audit log.", 500)
            return
        method, why = "password file", "wrong user name or password"
        role = None
        if acct is not None:
            role = acct.role if accounts.check_password(password, acct.hash) else None
        elif self.console.pam[0]:
            # a system account through PAM: the console group first, then PAM (pamauth)
            method = f"PAM service {self.console.pam[0]}"
            role = pamauth.role_of(user, *self.console.pam[1:])
            if role is None:
                why = "wrong user name or password (no console account, not in a PAM console group)"
            else:
                try:
                    ok, reason = pamauth.authenticate(self.console.pam[0], user, password)
                except pamauth.PamUnavailable as exc:
                    self.audit("login", f"refused: {exc}", user=user)
                    self.get_login("PAM login is configured but unavailable; see the audit log.", 500)
                    return
                if not ok:
                    role, why = None, f"wrong user name or password (PAM: {reason})"
        if role is None:
            self.console.limiter.failed(self.addr, user)
            self.audit("login", f"refused: {why}", user=user, method=method)
            self.get_login("Wrong user name or password.", 401)
            return
        self.console.limiter.succeeded(self.addr, user)
        s = self.console.sessions.create(user, role)
        self.audit("login", "ok", s, role=role, method=method)
        self.redirect("/status", [("Set-Cookie", self.cookie_header(COOKIE, s.id)),
                                  ("Set-Cookie", self.cookie_header(PRE_COOKIE, "", 0))])

    def post_logout(self, s: Session, form: dict[str, list[str]]) -> None:
        self.console.sessions.drop(s.id)
        self.audit("logout", "ok", s)
        self.redirect("/login", [("Set-Cookie", self.cookie_header(COOKIE, "", 0))])

    # -- status ---------------------------------------------------------------------------
    def get_status(self, s: Session) -> None:
        st = status_mod.collect(self.console.cfg, config_path=self.console.config_path)
        self.page("status.html.j2", session=s, st=st, config=self.console.config_path)

    # -- statistics -----------------------------------------------------------------------
    def _period(self) -> tuple[float, float, int, str]:
        q = self.query()
        period = q.get("period", "day")
        span, step = PERIODS.get(period, PERIODS["day"])
        end = time.time()
        try:
            if q.get("from") and q.get("to"):
                start = time.mktime(time.strptime(q["from"], "%Y-%m-%d"))
                end = time.mktime(time.strptime(q["to"], "%Y-%m-%d")) + 86400
                if not 0 < end - start <= 400 * 86400:
                    raise ValueError
                step = 3600 if end - start <= 2 * 86400 else 86400
                return start, end, step, "custom"
        except ValueError:
            pass
        return end - span, end, step, period if period in PERIODS else "day"

    def _stats(self) -> dict[str, Any]:
        start, end, step, period = self._period()
        store = self.console.store
        if store is None:
            return {"period": period, "start": start, "end": end, "step": step, "starts": [], "counts": {},
                    "top": [], "latency": {"count": 0, "mean": 0.0, "max": 0.0}, "store": False}
        starts, counts = store.series(start, end, step)
        return {"period": period, "start": start, "end": end, "step": step, "starts": starts, "counts": counts,
                "top": store.top_viruses(start, end), "latency": store.latency(start, end), "store": True}

    def get_statistics(self, s: Session) -> None:
        d = self._stats()
        totals = {st: sum(c) for st, c in d["counts"].items()}
        clean = totals.get("OK", 0)
        infected = sum(n for st, n in totals.items() if st not in ("OK", "NOT_CHECKED", "DEFERRED"))
        self.page("statistics.html.j2", session=s, d=d, totals=totals,
                  plot=plots.stacked_bars(d["starts"], d["counts"], d["step"]),
                  legend=plots.legend(sorted(d["counts"])),
                  ratio=plots.horizontal_bars([("OK", clean), ("INFECTED", infected)], "plot-ratio"),
                  top=plots.horizontal_bars(d["top"], "plot-viruses"), clean=clean, infected=infected,
                  fmt=lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t)), query=self.query())

    def get_statistics_json(self, s: Session) -> None:
        d = self._stats()
        doc = {"start": int(d["start"]), "end": int(d["end"]), "step": d["step"],
               "buckets": [{"start": t, **{st: c[i] for st, c in d["counts"].items()}}
                           for i, t in enumerate(d["starts"])],
               "totals": {st: sum(c) for st, c in d["counts"].items()},
               "top_viruses": [{"name": n, "count": c} for n, c in d["top"]], "latency": d["latency"]}
        self.send(200, json.dumps(doc, indent=1) + "\n", "application/json")

    def get_statistics_csv(self, s: Session) -> None:
        d = self._stats()
        statuses = sorted(d["counts"])
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["bucket_start", *statuses])
        for i, t in enumerate(d["starts"]):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
            w.writerow([when, *(d["counts"][st][i] for st in statuses)])
        self.send(200, buf.getvalue(), "text/csv; charset=utf-8",
                  [("Content-Disposition", 'attachment; filename="kav4ms-statistics.csv"')])

    # -- quarantine -----------------------------------------------------------------------
    def _entries(self) -> tuple[list[dict[str, Any]], list[str]]:
        rows, errors = [], []
        for q in self.console.quarantines():
            try:
                ids = q.ids()
            except OSError as exc:
                errors.append(f"{q.path}: {exc.strerror}")
                continue
            for qid in ids[:QUARANTINE_LIST_MAX]:
                try:
                    e = q.load(qid)
                except (QuarantineError, OSError) as exc:
                    errors.append(str(exc))
                    continue
                m = e.meta
                rows.append({"id": qid, "date": str(m.get("date", "")), "sender": e.sender,
                             "recipients": ", ".join(e.recipients), "subject": one_line(str(m.get("subject", "")), 200),
                             "virus": ", ".join(str(n) for n in m.get("names", []) or []),  # type: ignore[union-attr]
                             "status": str(m.get("status", "")), "size": m.get("size", 0), "dir": str(q.path)})
        rows.sort(key=lambda r: r["date"], reverse=True)
        return rows, errors

    def get_quarantine(self, s: Session) -> None:
        q = self.query()
        rows, errors = self._entries()
        for field in ("date", "sender", "recipients", "subject", "virus"):
            want = q.get(field, "").strip().lower()
            if want:
                rows = [r for r in rows if want in r[field].lower()]
        text = q.get("q", "").strip().lower()
        if text:
            rows = [r for r in rows if any(text in str(r[f]).lower()
                                           for f in ("date", "sender", "recipients", "subject", "virus"))]
        self.page("quarantine.html.j2", session=s, rows=rows, errors=errors, query=q,
                  result=q.get("result", ""))

    def _locate(self, qid: str) -> Quarantine | None:
        if not QID.match(qid):
            return None
        for q in self.console.quarantines():
            if (q.path / f"{qid}.kavq").is_file():
                return q
        return None

    def get_quarantine_view(self, s: Session) -> None:
        qid = self.query().get("id", "")
        q = self._locate(qid)
        if q is None:
            self.audit("quarantine.view", "refused: no such entry", s, id=qid[:100])
            self.send(404, "no such quarantine entry\n", "text/plain")
            return
        e = q.load(qid)
        parsed = BytesHeaderParser(policy=compat32).parsebytes(e.message)
        headers = [(k, one_line(str(v), 1000)) for k, v in parsed.items()]
        self.audit("quarantine.view", "ok", s, id=qid)
        self.page("quarantine_view.html.j2", session=s, e=e, headers=headers, meta=e.meta)

    def post_quarantine(self, s: Session, form: dict[str, list[str]]) -> None:
        action = (form.get("action") or [""])[-1]
        ids = form.get("id", [])
        if action not in ("release", "delete") or not ids or len(ids) > 1000:
            self.audit("quarantine", "refused: bad request", s, action=action[:20])
            self.send(400, "choose release or delete and at least one message\n", "text/plain")
            return
        results = []
        for qid in ids:
            q = self._locate(qid)
            if q is None:
                why = "not a quarantine id" if not QID.match(qid) else "no such entry"
                self.audit(f"quarantine.{action}", f"refused: {why}", s, id=qid[:200])
                results.append((qid[:64], f"refused: {why}"))
                continue
            if action == "delete":
                try:
                    q.delete(qid)
                    self.audit("quarantine.delete", "ok", s, id=qid)
                    results.append((qid, "deleted"))
                except (QuarantineError, OSError) as exc:
                    self.audit("quarantine.delete", f"failed: {exc}", s, id=qid)
                    results.append((qid, f"failed: {exc}"))
                continue
            ok, text = self._release(q, qid)
            self.audit("quarantine.release", "ok" if ok else f"failed: {text}", s, id=qid)
            results.append((qid, text))
        self.page("result.html.j2", session=s, title=f"Quarantine: {action}", results=results,
                  back="/quarantine")

    def _release(self, q: Quarantine, qid: str) -> tuple[bool, str]:
        """Hand the message to ForwardMailer for its original recipients; the entry goes only when
        the next hop accepted every one (as ``smtpscanner quarantine release``)."""
        e = q.load(qid)
        cfg = self.console.cfg
        mailer = ForwardMailer(cfg.get("smtpscan.general", "ForwardMailer"),
                               timeout=float(cfg.get("smtpscan.limits", "MaxCheckTime")))

        async def go() -> dict:
            try:
                async with mailer.session() as sess:
                    return await sess.send(Outgoing(e.sender, [Recipient(r) for r in e.recipients], e.message))
            finally:
                await mailer.close()

        try:
            res = asyncio.run(go())
        except ForwardError as exc:
            return False, f"not released, entry kept: {exc}"
        bad = {r: str(v) for r, v in res.items() if not v.ok}
        if bad:
            return False, f"refused by the next hop for {bad}; entry kept"
        q.delete(qid)
        return True, f"released to {', '.join(e.recipients)}"

    # -- configuration --------------------------------------------------------------------
    # Guide 4.3: settings are saved to the configuration file the daemons use; an alternative file
    # is a copy under another name in the same directory, edited the same way, and used by giving
    # its name to the daemons (-c).  Only plain *.conf names in that directory are ever opened.
    def _target(self, name: str | None) -> tuple[Path, KavConfig]:
        """(path, parsed configuration) of the file to show or edit; ValueError for a bad name."""
        running = Path(self.console.config_path)
        if not name or name == running.name:
            return running, self.console.cfg
        if not ALT_NAME.match(name):
            raise ValueError(f"{name!r}: an alternative configuration is a NAME.conf in {running.parent}")
        path = running.parent / name
        if not path.is_file() or path.is_symlink():
            raise ValueError(f"{path}: no such configuration file")
        return path, load_config(path)

    def _files(self) -> list[str]:
        running = Path(self.console.config_path)
        alts = sorted(p.name for p in running.parent.glob("*.conf")
                      if p.name != running.name and ALT_NAME.match(p.name) and not p.is_symlink())
        return [running.name, *alts]

    @staticmethod
    def _sections(cfg: KavConfig) -> list[str]:
        names = [sec.name for sec in S.SECTIONS if not sec.pattern]
        names += [f"smtpscan.group:{g.name}" for g in cfg.groups]
        return names

    @staticmethod
    def _rows(cfg: KavConfig, section: str) -> list[dict[str, str]]:
        schema = S.section_schema(section)
        assert schema is not None
        values = cfg.section(section)
        explicit = cfg.sections.get(section, {})
        return [{"key": k.name, "value": _fmt(k, values.get(k.name)), "default": k.default_text(),
                 "guide": k.guide, "doc": k.doc, "note": k.note, "set": k.name in explicit} for k in schema.keys]

    def get_config(self, s: Session) -> None:
        q = self.query()
        try:
            path, cfg = self._target(q.get("file"))
        except (ValueError, ConfigError) as exc:
            self.audit("config.view", f"refused: {exc}", s, file=q.get("file", "")[:200])
            self.send(404, f"{exc}\n", "text/plain")
            return
        sections = self._sections(cfg)
        section = q.get("section", "")
        if section not in sections:
            section = sections[0]
        self.page("config.html.j2", session=s, sections=sections, section=section,
                  schema=S.section_schema(section), rows=self._rows(cfg, section), config=str(path),
                  file=path.name, files=self._files(), running=Path(self.console.config_path).name)

    def _changes(self, form: dict[str, list[str]]) -> tuple[Path | None, str, list[Assignment], list[str]]:
        section = (form.get("section") or [""])[-1]
        try:
            path, cfg = self._target((form.get("file") or [""])[-1])
        except (ValueError, ConfigError) as exc:
            return None, section, [], [str(exc)]
        if section not in self._sections(cfg):
            return path, section, [], [f"[{section}]: not a section of this configuration"]
        current = {r["key"]: r["value"] for r in self._rows(cfg, section)}
        changes, errors = [], []
        for field, vals in form.items():
            if not field.startswith("k:"):
                continue
            key, value = field[2:], vals[-1]
            if "\n" in value or "\r" in value:
                errors.append(f"[{section}] {key}: a value is one line")
                continue
            if key not in current:
                errors.append(f"[{section}] {key}: unknown key")
                continue
            if value == current[key]:
                continue
            try:
                changes.append(normalise(section, key, value, str(path)))
            except ConfigError as exc:
                errors.extend(str(m) for m in exc.messages)
        return path, section, changes, errors

    def post_config_preview(self, s: Session, form: dict[str, list[str]]) -> None:
        path, section, changes, errors = self._changes(form)
        diff = ""
        if path is not None and not errors and changes:
            old = path.read_text(encoding="utf-8")
            new = apply_assignments(old, changes, str(path))
            try:
                loads_config(new, filename=str(path))
            except ConfigError as exc:
                errors.extend(str(m) for m in exc.messages)
            diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(path),
                                                f"{path} (new)"))
        self.audit("config.preview", "invalid" if errors else "ok", s, file=str(path), section=section,
                   changes=[f"{a.key}={a.value}" for a in changes], errors=errors)
        self.page("config_preview.html.j2", 422 if errors else 200, session=s, section=section,
                  changes=changes, errors=errors, diff=diff, file=path.name if path else "")

    def post_config_save(self, s: Session, form: dict[str, list[str]]) -> None:
        path, section, changes, errors = self._changes(form)
        changed = False
        if path is not None and not errors and changes:
            try:
                changed = set_values(path, changes)
            except ConfigError as exc:
                errors.extend(str(m) for m in exc.messages)
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror}")
        if path is None or errors:
            self.audit("config.save", "refused: invalid", s, file=str(path), section=section, errors=errors)
            self.page("config_preview.html.j2", 422, session=s, section=section, changes=changes, errors=errors,
                      diff="", file=path.name if path else "")
            return
        self.audit("config.save", "ok" if changed else "unchanged", s, file=str(path), section=section,
                   changes=[f"{a.key}={a.value}" for a in changes])
        results = [("save", f"{len(changes)} value(s) written to {path}" if changed else "nothing changed")]
        if changed and str(path) == self.console.config_path:
            self.console.reload_config()
            results += self._reload(s)
        elif changed:
            results.append(("daemons", f"not reloaded: they use {self.console.config_path}; start them with "
                                       f"-c {path} to use this alternative file"))
        self.page("result.html.j2", session=s, title="Configuration saved", results=results,
                  back=f"/config?file={urllib.parse.quote(path.name)}&section={urllib.parse.quote(section)}")

    def post_config_copy(self, s: Session, form: dict[str, list[str]]) -> None:
        """4.3's first step: copy the configuration to a new file under another name."""
        name = (form.get("name") or [""])[-1]
        try:
            source, _ = self._target((form.get("file") or [""])[-1])
            if not ALT_NAME.match(name):
                raise ValueError(f"{name!r}: give a file name like alternative.conf (letters, digits, . _ -)")
            dest = source.parent / name
            if dest.exists() or dest.is_symlink():
                raise ValueError(f"{dest} exists already")
            atomic_write(dest, source.read_bytes(), mode=0o640)
        except (ValueError, ConfigError, OSError) as exc:
            self.audit("config.copy", f"refused: {exc}", s, name=name[:200])
            self.page("result.html.j2", 422, session=s, title="Copy refused", results=[("copy", str(exc))],
                      back="/config")
            return
        self.audit("config.copy", "ok", s, source=str(source), file=str(dest))
        self.redirect(f"/config?file={urllib.parse.quote(name)}")

    def post_reload(self, s: Session, form: dict[str, list[str]]) -> None:
        """Reload asks the daemons even when the file is invalid (an edit made by hand): each checks
        it itself, keeps serving the configuration it has and says why; the console keeps showing
        the last valid one and says so too."""
        results = []
        try:
            self.console.reload_config()
        except ConfigError as exc:
            results.append(("console", f"{self.console.config_path} is invalid, the console keeps the previous "
                                       f"configuration: {'; '.join(str(m) for m in exc.messages)}"))
            self.audit("reload.console", "refused: invalid configuration", s, errors=[str(m) for m in exc.messages])
        self.page("result.html.j2", session=s, title="Reload", results=results + self._reload(s), back="/status")

    def _reload(self, s: Session) -> list[tuple[str, str]]:
        """aveserver: clamd's RELOAD over its UNIX socket (6.4.2: configuration and database
        re-read), which aveserver grants to root and its own account after checking the peer's
        credentials with the kernel (SO_PEERCRED): no pid file to trust, no signal to a root master
        the unprivileged console could not send.  smtpscanner: SIGHUP to the standing daemon, which
        runs as this console's account, after checking that its pid file names smtpscanner with
        this very configuration file (runtime.console.reload); its answer is the generation now
        serving or the line, file and key that made it refuse."""
        out = []
        sock = str(self.console.cfg.get("path", "LocalSocketPath"))
        try:
            answer = clamd_command(sock, b"RELOAD")
            if answer != "RELOADING":
                raise OSError(answer)
            out.append(("aveserver", "reload requested: configuration and database re-read (RELOADING)"))
            self.audit("reload.aveserver", "ok", s, socket=sock)
        except OSError as exc:
            out.append(("aveserver", f"not reloaded: {exc}"))
            self.audit("reload.aveserver", f"failed: {exc}", s, socket=sock)
        got = reload_mod.request(self.console.cfg, self.console.config_path)
        out.append(("smtpscanner", got.text))
        result = {"reloaded": f"ok (generation {got.state.generation})" if got.state else "ok",
                  "refused": "refused by smtpscanner: invalid configuration",
                  "not-signalled": f"refused: {got.text}"}.get(got.status, got.status)
        self.audit("reload.smtpscanner", result, s, pid=got.pid,
                   restart_needed=got.state.restart_needed if got.state else [])
        return out

    # -- audit & metrics ------------------------------------------------------------------
    def get_audit(self, s: Session) -> None:
        if s.role != "admin":
            self.send(403, "your account is read-only\n", "text/plain")
            return
        self.page("audit.html.j2", session=s, records=self.console.audit.read())

    def get_metrics(self) -> None:
        ip = ipaddress.ip_address(self.addr.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        allowed = ip.is_loopback or any(ip in n for n in self.console.metrics_allow)
        if not allowed:
            s, _ = self.session()
            if s is None:
                self.audit("metrics", "refused: address not in [console] MetricsAllow")
                self.send(403, "forbidden\n", "text/plain")
                return
        self.send(200, metrics.render(self.console.cfg, self.console.store), metrics.CONTENT_TYPE)


def clamd_command(path: str, command: bytes, timeout: float = 10.0) -> str:
    """One clamd command (``zCOMMAND\\0``) over aveserver's UNIX socket; its one-line answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(path)
        c.sendall(b"z" + command + b"\0")
        answer = b""
        while not answer.endswith(b"\0") and len(answer) < 4096:
            chunk = c.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.rstrip(b"\0").decode("utf-8", "replace").strip()


def make_server(console: Console, listen: str) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"

    c = console.cfg.section("console")
    ctx: ssl.SSLContext | None = None
    if console.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(c["TLSCertificate"]), str(c["TLSKey"]))

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 64
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def finish_request(self, request, client_address) -> None:  # noqa: ANN001
            # Every connection has a deadline, and the TLS handshake happens here, in the
            # connection's own thread: a client that stalls cannot hold up the accept loop.
            request.settimeout(REQUEST_TIMEOUT)
            if ctx is not None:
                try:
                    request = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    request.close()
                    return
            super().finish_request(request, client_address)

    handler = type("BoundHandler", (Handler,), {"console": console})
    return Server((host, int(port)), handler)
