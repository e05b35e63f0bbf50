"""kavscanner: on-demand and scheduled scanning of server file systems (guide 5.3, 6.2, 6.3, 6.8)."""
