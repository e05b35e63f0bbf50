"""How many connections and scans one aveserver worker takes at once.

A module of its own because both sides size themselves by it: aveserver starts that many serving
threads per worker, and smtpscanner keeps its connection pool below ``Workers x
THREADS_PER_WORKER`` so a busy filter never queues behind its own idle connections.  Importing it
costs nothing (aveserver's module pulls in the matcher and Hyperscan).
"""

THREADS_PER_WORKER = 16  # connections served at once; idle ones cost only a thread
SCANS_PER_WORKER = 1  # objects held in memory and scanned at once
