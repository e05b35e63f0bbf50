"""bench/soak: the fault soak (issue 19 item 1); see run.py."""
