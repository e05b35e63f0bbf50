"""kavconsole over TLS when [console] TLSCertificate and TLSKey are set (guide 4.3: remote use)."""

from __future__ import annotations

import http.client
import socket
import ssl
import time

from tests.support.console import Client, ConsoleStack, chown_tree, self_signed

PW = "correct horse battery"


def test_console_speaks_only_tls_with_a_certificate(make_console) -> None:  # noqa: ANN001
    st: ConsoleStack = make_console(start_console=False)
    crt, key = self_signed(st.root)
    text = st.conf.read_text().replace("[console]\n", f"[console]\nTLSCertificate={crt}\nTLSKey={key}\n")
    st.conf.write_text(text)
    chown_tree(st.root)
    st.start_console()
    ctx = ssl.create_default_context(cafile=str(crt))
    c = Client(f"https://127.0.0.1:{st.console_port}", tls=ctx)
    assert c.login("admin", PW) == 303
    assert "Secure" in c.last_set_cookie and "HttpOnly" in c.last_set_cookie
    code, _, body = c.get("/status")
    assert code == 200 and "aveserver" in body
    # plain HTTP on the TLS port gets no page
    plain = http.client.HTTPConnection("127.0.0.1", st.console_port, timeout=10)
    try:
        plain.request("GET", "/login")
        plain.getresponse()
        raise AssertionError("a plain HTTP request was answered")
    except (http.client.HTTPException, OSError):
        pass
    # a client that connects and never speaks does not stop the console serving others
    idle = socket.create_connection(("127.0.0.1", st.console_port))
    try:
        t0 = time.monotonic()
        assert Client(f"https://127.0.0.1:{st.console_port}", tls=ctx).get("/login")[0] == 200
        assert time.monotonic() - t0 < 10
    finally:
        idle.close()
