"""A ctypes binding to Debian's Hyperscan library (``libhyperscan5``: ``libhs.so.5``).

Why (issue 12 item 5, decision in docs/packaging.md): Debian packages Hyperscan itself but no
Python binding, and the ``hyperscan`` wheel bundles its own static copy of the library, which
Debian's security updates would never reach.  The installed package therefore talks to the
distribution's shared library through ctypes: no compiled code of ours in an ``Architecture: all``
package, security fixes arrive with ``libhyperscan5``, and only Hyperscan's stable C API is used
(``hs_compile_multi``, ``hs_alloc_scratch``, ``hs_scan``, ``hs_serialize_database``,
``hs_deserialize_database``, unchanged since 4.x).

The module offers the small part of the ``hyperscan`` wheel's interface that
runtime/engine/matcher.py uses (``Database``, ``Scratch``, ``dumpb``, ``loadb``, the flags), so
the matcher runs unchanged on either.  ``available()`` is False when the library is absent
(non-amd64 hosts, or ``libhyperscan5`` not installed; it is only a Recommends) or when the CPU
lacks what the library needs (``hs_valid_platform``): the matcher then uses its Aho-Corasick
prefilter.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from typing import Any

HS_SUCCESS = 0
HS_SCAN_TERMINATED = -3
HS_FLAG_CASELESS = 1
HS_FLAG_DOTALL = 2
HS_FLAG_MULTILINE = 4
HS_FLAG_SINGLEMATCH = 8
HS_FLAG_ALLOWEMPTY = 16
HS_FLAG_UTF8 = 32
HS_FLAG_PREFILTER = 512
HS_FLAG_SOM_LEFTMOST = 256
HS_MODE_BLOCK = 1

_NAMES = ("libhs.so.5", "libhs.so")


class error(Exception):  # noqa: N801 - the wheel's name, so callers catch one exception for both
    """A Hyperscan call failed (the message carries the library's own text and the expression)."""


class _CompileError(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char_p), ("expression", ctypes.c_int)]


_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint, ctypes.c_ulonglong, ctypes.c_ulonglong, ctypes.c_uint,
                            ctypes.c_void_p)
_lib: Any = None
_libc: Any = None
_tried = False
_lock = threading.Lock()
__version__ = ""


def _load() -> Any:
    """Open libhs once; None when it is missing or unusable on this CPU."""
    global _lib, _libc, _tried, __version__
    with _lock:
        if _tried:
            return _lib
        _tried = True
        if os.environ.get("KAV_NO_LIBHS"):  # tests force the Aho-Corasick path with it
            return None
        lib = None
        for name in (*_NAMES, ctypes.util.find_library("hs")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            return None
        vp, pp, up, sz = ctypes.c_void_p, ctypes.POINTER, ctypes.c_uint, ctypes.c_size_t
        lib.hs_version.restype = ctypes.c_char_p
        lib.hs_valid_platform.restype = ctypes.c_int
        lib.hs_compile_multi.argtypes = [pp(ctypes.c_char_p), pp(up), pp(up), up, up, vp, pp(vp),
                                         pp(pp(_CompileError))]
        lib.hs_free_compile_error.argtypes = [pp(_CompileError)]
        lib.hs_alloc_scratch.argtypes = [vp, pp(vp)]
        lib.hs_free_scratch.argtypes = [vp]
        lib.hs_free_database.argtypes = [vp]
        lib.hs_scan.argtypes = [vp, ctypes.c_char_p, up, up, vp, _HANDLER, vp]
        lib.hs_serialize_database.argtypes = [vp, pp(vp), pp(sz)]
        lib.hs_deserialize_database.argtypes = [ctypes.c_char_p, sz, pp(vp)]
        if lib.hs_valid_platform() != HS_SUCCESS:
            return None
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.free.argtypes = [vp]
        _lib, _libc = lib, libc
        __version__ = "libhs " + lib.hs_version().decode("ascii", "replace").split()[0]
        return lib


def available() -> bool:
    return _load() is not None


def _check(rc: int, what: str) -> None:
    if rc != HS_SUCCESS:
        raise error(f"{what} failed (Hyperscan error {rc})")


class Database:
    """A block-mode database: compiled here, or loaded from serialised bytes (``loadb``)."""

    def __init__(self, mode: int = HS_MODE_BLOCK) -> None:
        if _load() is None:
            raise error("libhs.so.5 (Debian's libhyperscan5) is not available")
        self.mode = mode
        self.handle = ctypes.c_void_p()

    def compile(self, expressions: list[bytes], ids: list[int], elements: int, flags: int | list[int]) -> None:
        n = elements
        exprs = (ctypes.c_char_p * n)(*expressions)
        fl = (ctypes.c_uint * n)(*(flags if isinstance(flags, list) else [flags] * n))
        idv = (ctypes.c_uint * n)(*ids)
        err = ctypes.POINTER(_CompileError)()
        db = ctypes.c_void_p()
        rc = _lib.hs_compile_multi(exprs, fl, idv, n, self.mode, None, ctypes.byref(db), ctypes.byref(err))
        if rc != HS_SUCCESS:
            msg = "compile failed"
            if err:
                msg = f"{err.contents.message.decode('utf-8', 'replace')} (expression {err.contents.expression})"
                _lib.hs_free_compile_error(err)
            raise error(msg)
        self._replace(db)

    def _replace(self, db: ctypes.c_void_p) -> None:
        if self.handle:
            _lib.hs_free_database(self.handle)
        self.handle = db

    def scan(self, data: bytes, match_event_handler: Any, context: Any = None, scratch: Scratch | None = None) -> None:
        """Call ``match_event_handler(id, from, to, flags, context)`` for each match (it returns None)."""
        if scratch is None:
            scratch = Scratch(self)

        def on_match(ident: int, frm: int, to: int, flags: int, _ctx: Any) -> int:
            return 1 if match_event_handler(ident, frm, to, flags, context) else 0

        rc = _lib.hs_scan(self.handle, data, len(data), 0, scratch.handle, _HANDLER(on_match), None)
        if rc not in (HS_SUCCESS, HS_SCAN_TERMINATED):
            raise error(f"hs_scan failed (Hyperscan error {rc})")

    def __del__(self) -> None:
        if _lib is not None and self.handle:
            _lib.hs_free_database(self.handle)
            self.handle = ctypes.c_void_p()


class Scratch:
    """Per-thread scratch space (Hyperscan needs one per concurrent scan)."""

    def __init__(self, db: Database) -> None:
        self.handle = ctypes.c_void_p()
        _check(_lib.hs_alloc_scratch(db.handle, ctypes.byref(self.handle)), "hs_alloc_scratch")

    def __del__(self) -> None:
        if _lib is not None and self.handle:
            _lib.hs_free_scratch(self.handle)
            self.handle = ctypes.c_void_p()


def dumpb(db: Database) -> bytes:
    out, size = ctypes.c_void_p(), ctypes.c_size_t()
    _check(_lib.hs_serialize_database(db.handle, ctypes.byref(out), ctypes.byref(size)), "hs_serialize_database")
    try:
        return ctypes.string_at(out, size.value)
    finally:
        _libc.free(out)


def loadb(blob: bytes, mode: int = HS_MODE_BLOCK) -> Database:
    db = Database(mode)
    handle = ctypes.c_void_p()
    _check(_lib.hs_deserialize_database(blob, len(blob), ctypes.byref(handle)), "hs_deserialize_database")
    db._replace(handle)
    return db
