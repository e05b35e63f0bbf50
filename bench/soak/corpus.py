"""The soak's messages: one seeded, reproducible stream of mixed mail (issue 19 item 1).

Every message is rebuilt from ``(seed, seq)`` alone, so the sender (inside the sandbox's network
namespace) and the checker (on the host) agree on what was sent without passing the bytes around.

Kinds and shares (of ``--messages``):

* ``clean`` (~90 %): a text part and a random binary attachment, sizes 1 KB to 5 MB (85 % up to
  20 KB, 14 % up to 300 KB, 1 % 1-5 MB: mostly small like real mail, a few big enough to stress
  the spool and the 5 MB end of the range).
* ``infected`` (5 %): the EICAR test file as an attachment, bare or inside a zip, or a text
  attachment carrying the soak's own body signature (``SOAK_MARKER``, in ``soak.ndb`` placed in
  the package's BasesPath), so detection of both a built-in and a dropped-in signature is tested.
* ``protected`` (2 %): a password-protected (ZipCrypto) zip, made by Info-ZIP's ``zip -P``.
* ``malformed`` (3 %): broken MIME a real mail stream carries: a boundary that never comes, a
  multipart without a boundary parameter, a base64 part with garbage, a header line without a
  colon continuation, an unknown transfer encoding.

The body digest is over the body (after the blank line) with line ends normalised to LF and
trailing blank lines dropped: what an mbox keeps of what was sent, whatever the MTA did with CRLF.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

# The EICAR test file (guide chapter 8) from two halves, so this file itself is not flagged.
EICAR = (r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-" + r"ANTIVIRUS-TEST-FILE!$H+H*").encode()
#: The soak's own body signature (hex-encoded into soak.ndb): proves a signature file the admin
#: drops into BasesPath is loaded and matched, not only EICAR.
SOAK_MARKER = b"kav4ms-soak-" + b"test-signature-7f3a9c"
SIGNATURE_NAME = "Soak.Test.BodySignature"
RECIPIENT = "alice@mta.test"


@dataclass(frozen=True)
class Spec:
    seq: int
    kind: str  # clean | infected | protected | malformed
    variant: str
    size: int
    message_id: str
    subject: str


def signature_file() -> str:
    """soak.ndb: one body signature (ClamAV .ndb form: name:target:offset:hex)."""
    return f"{SIGNATURE_NAME}:0:*:{SOAK_MARKER.hex()}\n"


def spec(seed: int, seq: int) -> Spec:
    rnd = random.Random(f"{seed}/{seq}")
    r = rnd.random()
    kind = "infected" if r < 0.05 else "protected" if r < 0.07 else "malformed" if r < 0.10 else "clean"
    s = rnd.random()
    if s < 0.85:
        size = rnd.randint(1_000, 20_000)
    elif s < 0.99:
        size = rnd.randint(20_000, 300_000)
    else:
        size = rnd.randint(1_000_000, 5_000_000)
    variant = {
        "clean": "attachment",
        "infected": rnd.choice(["eicar", "eicar-zip", "marker"]),
        "protected": "zipcrypto",
        "malformed": rnd.choice(["unclosed-boundary", "no-boundary-param", "bad-base64", "bad-header",
                                 "unknown-cte"]),
    }[kind]
    return Spec(seq, kind, variant, size, f"<soak-{seed}-{seq}@client.example.org>", f"soak {seed}-{seq} {kind}")


def _payload(rnd: random.Random, n: int) -> bytes:
    return rnd.getrandbits(8 * n).to_bytes(n, "little") if n > 0 else b""


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode()


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def _text_lines(rnd: random.Random, n: int) -> str:
    words = ["mail", "report", "soak", "queue", "filter", "scan", "delivery", "status", "line", "data"]
    out, total = [], 0
    while total < n:
        line = " ".join(rnd.choice(words) for _ in range(rnd.randint(4, 12)))
        out.append(line)
        total += len(line) + 1
    return "\n".join(out) + "\n"


def build(seed: int, seq: int, protected_zips: list[bytes]) -> tuple[Spec, bytes]:
    """The message as sent (LF line ends; smtplib turns them into CRLF on the wire)."""
    sp = spec(seed, seq)
    rnd = random.Random(f"{seed}/{seq}/body")
    head = (f"From: client{seq % 20}@client.example.org\nTo: {RECIPIENT}\nSubject: {sp.subject}\n"
            f"Message-ID: {sp.message_id}\nDate: Tue, 01 Dec 2026 12:00:00 +0000\nMIME-Version: 1.0\n")
    text = _text_lines(rnd, 300)
    bulk = max(0, sp.size - 1200) * 3 // 4  # base64 grows by 4/3
    b = f"soakb{seq}"
    part = ("--{b}\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"{n}\"\n"
            "Content-Transfer-Encoding: base64\n\n{data}")
    if sp.kind == "clean":
        body = (f"--{b}\nContent-Type: text/plain\n\n{text}\n"
                + part.format(b=b, n="data.bin", data=_b64(_payload(rnd, bulk))) + f"--{b}--\n")
        return sp, (head + f'Content-Type: multipart/mixed; boundary="{b}"\n\n' + body).encode()
    if sp.kind == "infected":
        if sp.variant == "eicar":
            bad = part.format(b=b, n="eicar.com", data=_b64(EICAR))
        elif sp.variant == "eicar-zip":
            bad = part.format(b=b, n="eicar.zip", data=_b64(_zip("eicar.com", EICAR)))
        else:
            filler = _text_lines(rnd, 2000)
            bad = (f"--{b}\nContent-Type: text/plain; name=\"notes.txt\"\nContent-Disposition: attachment; "
                   f"filename=\"notes.txt\"\n\n{filler}{SOAK_MARKER.decode()}\n{filler}")
        body = (f"--{b}\nContent-Type: text/plain\n\n{text}\n"
                + part.format(b=b, n="data.bin", data=_b64(_payload(rnd, bulk))) + bad + f"--{b}--\n")
        return sp, (head + f'Content-Type: multipart/mixed; boundary="{b}"\n\n' + body).encode()
    if sp.kind == "protected":
        z = protected_zips[seq % len(protected_zips)]
        body = (f"--{b}\nContent-Type: text/plain\n\nThe password is in the other mail.\n"
                + part.format(b=b, n="secret.zip", data=_b64(z)) + f"--{b}--\n")
        return sp, (head + f'Content-Type: multipart/mixed; boundary="{b}"\n\n' + body).encode()
    data = _b64(_payload(rnd, bulk))
    if sp.variant == "unclosed-boundary":
        ctype, body = f'multipart/mixed; boundary="{b}"', f"--{b}\nContent-Type: text/plain\n\n{text}{data}"
    elif sp.variant == "no-boundary-param":
        ctype, body = "multipart/mixed", f"--{b}\nContent-Type: text/plain\n\n{text}--{b}--\n"
    elif sp.variant == "bad-base64":
        ctype = f'multipart/mixed; boundary="{b}"'
        body = (f"--{b}\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
                f"{data}!!!not*base64***\n=====\n{data[:200]}\n--{b}--\n")
    elif sp.variant == "bad-header":
        ctype = f'multipart/mixed; boundary="{b}"'
        body = (f"--{b}\nContent-Type: text/plain\nthis header line has no colon\n\n{text}\n--{b}--\n")
    else:
        ctype = "application/octet-stream"
        head += "Content-Transfer-Encoding: x-soak-unknown\n"
        body = data
    return sp, (head + f"Content-Type: {ctype}\n\n" + body).encode()


def body_digest(raw: bytes) -> str:
    """Digest of what follows the first blank line, line ends normalised, trailing blank lines dropped."""
    raw = raw.replace(b"\r\n", b"\n")
    i = raw.find(b"\n\n")
    body = raw[i + 2:] if i >= 0 else b""
    return hashlib.sha256(body.rstrip(b"\n")).hexdigest()


def make_protected_zips(work: Path, count: int = 4) -> list[bytes]:
    """A few ZipCrypto archives from Info-ZIP's ``zip -P`` (Python's zipfile cannot encrypt)."""
    import subprocess

    out = []
    for i in range(count):
        d = work / f"protected{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "contract.txt").write_bytes(_payload(random.Random(i), 4000))
        target = work / f"protected{i}.zip"
        target.unlink(missing_ok=True)
        subprocess.run(["zip", "-q", "-j", "-P", f"pw{i}", str(target), str(d / "contract.txt")], check=True)
        out.append(target.read_bytes())
    return out
