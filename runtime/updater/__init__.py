"""keepup2date: keep the anti-virus databases current, verified, from any source (guide 5.1).

One job per module: ``sources`` (where updates come from, in the guide's order, and the persisted
cool-down of sources that answered 429/403), ``fetch`` (http/https/file/directory transfers with
proxy, resume and conditional requests), ``dnstxt`` (ClamAV's DNS TXT version record), ``cdiff``
(incremental updates of a container), ``install`` (staging, load test, atomic switch, rollback),
``cli`` (the ``keepup2date`` command).  Container reading and signature checks are the engine's
(runtime/engine/cvd.py, dsig.py): nothing here parses a CVD a second way.
"""
