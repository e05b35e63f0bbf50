"""``/metrics``: Prometheus text format (guide 1.1 statistics, 6.8.3) with ``prometheus_client``.

The pre-forked smtpscanner processes do not keep counters in their own memory (which would die
with each process and need the client's multiprocess file directory); they already write every
message to the statistics store, one transaction each, with running totals beside the events.  A
custom collector turns those totals into counters and a histogram at scrape time, so the numbers
are exact across processes and survive restarts of either program.  Virus-name labels are bounded:
the most frequent MAX_VIRUS_LABELS names, the rest summed as ``other``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from runtime.config import KavConfig
from runtime.console import status as status_mod
from runtime.filter.statstore import BUCKETS, StatStore

MAX_VIRUS_LABELS = 50
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ProductCollector:
    def __init__(self, cfg: KavConfig, store: StatStore | None) -> None:
        self.cfg = cfg
        self.store = store

    def collect(self):  # noqa: ANN201 - the prometheus_client collector protocol
        totals: dict[str, dict[str, float]] = {}
        store_up = GaugeMetricFamily("kav4ms_statistics_store_up", "1 when the statistics store could be read")
        if self.store is not None:
            try:
                totals = self.store.totals()
                store_up.add_metric([], 1)
            except Exception:  # noqa: BLE001 - a broken store is reported, not a 500
                store_up.add_metric([], 0)
        else:
            store_up.add_metric([], 0)
        yield store_up

        msgs = CounterMetricFamily("kav4ms_messages", "Message parts delivered, by AVStatistics status",
                                   labels=["status"])
        for st, n in sorted(totals.get("messages", {}).items()):
            msgs.add_metric([st], n)
        yield msgs

        det = CounterMetricFamily("kav4ms_detections", "Detections by virus name (top names, the rest as other)",
                                  labels=["virus"])
        names = sorted(totals.get("detections", {}).items(), key=lambda kv: (-kv[1], kv[0]))
        for name, n in names[:MAX_VIRUS_LABELS]:
            det.add_metric([name], n)
        rest = sum(n for _, n in names[MAX_VIRUS_LABELS:])
        if rest:
            det.add_metric(["other"], rest)
        yield det

        yield CounterMetricFamily("kav4ms_scanned_bytes", "Bytes of mail received for scanning",
                                  value=totals.get("bytes", {}).get("", 0))
        tf = CounterMetricFamily("kav4ms_tempfail", "Message parts answered 4xx, by reason", labels=["reason"])
        for reason, n in sorted(totals.get("tempfail", {}).items()):
            tf.add_metric([reason], n)
        yield tf

        raw = totals.get("duration_bucket", {})
        acc, buckets = 0.0, []
        for b in BUCKETS:
            acc += raw.get(repr(b), 0)
            buckets.append((repr(b), acc))
        buckets.append(("+Inf", acc + raw.get("+Inf", 0)))
        yield HistogramMetricFamily("kav4ms_scan_duration_seconds", "Time smtpscanner took per message",
                                    buckets=buckets, sum_value=totals.get("duration_sum", {}).get("", 0))

        st = status_mod.collect(self.cfg, queue=False)
        yield GaugeMetricFamily("kav4ms_aveserver_up", "1 when aveserver answers VERSION", value=int(st.aveserver_up))
        yield GaugeMetricFamily("kav4ms_smtpscanner_up", "1 when smtpscanner accepts connections",
                                value=int(st.smtpscanner_up))
        if st.sessions is not None:
            yield GaugeMetricFamily("kav4ms_smtpscanner_sessions", "SMTP/LMTP connections open to smtpscanner's "
                                    "listener (from /proc/net)", value=st.sessions)
        if st.filter_busy is not None:
            yield GaugeMetricFamily("kav4ms_smtpscanner_workers_busy", "smtpscanner workers holding at least one "
                                    "session (from /proc)", value=st.filter_busy)
            yield GaugeMetricFamily("kav4ms_smtpscanner_workers_idle", "smtpscanner workers holding no session",
                                    value=st.filter_idle)
        days = GaugeMetricFamily("kav4ms_licence_days_left", "Days until the active product key of each type "
                                 "expires (negative: expired)", labels=["type", "serial"])
        for (ktype, serial), n in sorted(st.days_left.items()):
            days.add_metric([ktype, serial], n)
        yield days
        if st.aveserver_up:
            info = GaugeMetricFamily("kav4ms_database_info", "The loaded anti-virus database",
                                     labels=["database", "date"])
            info.add_metric([st.database, st.db_date], 1)
            yield info
            yield GaugeMetricFamily("kav4ms_database_records", "Signature records loaded", value=st.records)
            if st.workers is not None:
                yield GaugeMetricFamily("kav4ms_aveserver_workers", "aveserver worker processes running",
                                        value=st.workers)
            if st.busy is not None:
                yield GaugeMetricFamily("kav4ms_aveserver_workers_busy", "aveserver workers scanning now "
                                        "(holding a scan slot, from its scoreboard)", value=st.busy)
                yield GaugeMetricFamily("kav4ms_aveserver_workers_idle", "aveserver workers not scanning",
                                        value=st.idle)
                yield GaugeMetricFamily("kav4ms_aveserver_scans_in_progress", "Scans running over all aveserver "
                                        "workers", value=st.scans)
            if st.db_age is not None:
                yield GaugeMetricFamily("kav4ms_database_age_seconds", "Age of the loaded database",
                                        value=st.db_age)


def render(cfg: KavConfig, store: StatStore | None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProductCollector(cfg, store))
    return generate_latest(registry)
