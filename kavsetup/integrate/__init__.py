"""MTA integration that can be undone (guide 4.4, 7; docs/integration.md): compile -> plan -> journaled apply -> verify.

``compile_plan(System, IntegrationSettings) -> Plan`` is pure (plan.py) and asks the MTA's module
(kavsetup/mta/<name>.py) for the edits; site.py gathers the site facts it needs; ``Transaction``
applies a Plan under a journal and reverses it (transaction.py, journal.py); Edits describe, apply
and reverse one change each (edits.py); verify.py checks the result.  See docs/integration.md.
"""
