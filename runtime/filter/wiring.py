"""What one smtpscanner process is made of, built from the configuration (guide 6.6).

The aveserver client, the ForwardMailer, the statistics file and the Processor that ties them
together, plus the EHLO features the SMTP side offers.  Every mode (daemon, ``--stdio``,
``qmail-queue``) builds the same parts here, so they cannot drift apart.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from runtime.config import KavConfig
from runtime.engine.capacity import THREADS_PER_WORKER
from runtime.filter.avescan import AsyncAveClient
from runtime.filter.forward import ForwardMailer
from runtime.filter.process import Processor
from runtime.filter.smtpd import Features
from runtime.filter.stats import Statistics
from runtime.filter.statstore import StatStore
from runtime.report import EventLog


@dataclass
class FilterParts:
    processor: Processor
    features: Features

    async def close(self) -> None:
        """Close the pooled connections to the next hop and to aveserver."""
        await self.processor.mailer.close()
        await self.processor.client.close()


def build(cfg: KavConfig, log: EventLog, processes: int = 1) -> FilterParts:
    """``processes``: event-loop processes sharing aveserver, each gets its share of its threads."""
    limits = cfg.section("smtpscan.limits")
    gen = cfg.section("smtpscan.general")
    max_check = float(limits["MaxCheckTime"])
    # aveserver serves Workers x THREADS_PER_WORKER connections; keep two for other clients.
    workers = int(cfg.get("aveserver.options", "Workers")) or os.cpu_count() or 1
    slots = max(1, min(int(limits["MaxScanners"]), (workers * THREADS_PER_WORKER - 2) // max(1, processes)))
    client = AsyncAveClient(cfg.get("path", "LocalSocketPath"), timeout=max_check, pool_size=slots)
    mailer = ForwardMailer(gen["ForwardMailer"], timeout=max_check, helo=socket.getfqdn() or "localhost")
    stats_path = cfg.get("smtpscan.report", "AVStatistics")
    store_path = cfg.get("console", "StatisticsStore")
    store = StatStore(store_path, int(cfg.get("console", "StatisticsKeepDays"))) if store_path else None
    stats = (Statistics(stats_path, cfg.get("smtpscan.report", "ReportFilePermission"), store)
             if stats_path or store else None)
    proc = Processor(cfg, log, client, mailer, stats)
    features = Features(
        lmtp=gen["Protocol"] == "lmtp",
        size=int(limits["MaxMessageSize"]),
        eightbit=bool(gen["EHLOsupport8BITMIME"]),
        dsn=bool(gen["EHLOsupportDSN"]),
        xforward=list(gen["EHLOattrsXFORWARD"]) if gen["EHLOsupportXFORWARD"] else None,
        smtputf8=bool(gen["EHLOsupportSMTPUTF8"]),
    )
    return FilterParts(proc, features)
