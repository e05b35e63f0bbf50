"""kavconsole: the web console of kav4mailservers (guide 4.3 remote administration, 1.1, 6.8.3)."""
