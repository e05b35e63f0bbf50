"""MTA integration that can be undone (issue 4): compile -> plan -> journaled apply -> verify.

``compile(System, Settings) -> Plan`` is pure (compile.py); ``Transaction`` applies a Plan under a
journal and reverses it (transaction.py, journal.py); Edits describe, apply and reverse one change
each (edits.py).  See docs/integration.md.
"""
