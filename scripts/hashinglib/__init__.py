"""Pure code behind ``scripts/hashing-study``: key placement schemes and what to measure.

Every scheme places the same keys, hashed the same way, so the study compares
placement rules and not hash functions. Each one exists twice where it
matters: vectorised with numpy to place a million keys in well under a
second, and as a scalar ``lookup`` of one key, which is what a client would
run and what the lookup cost measures. Tests check that both agree.
"""
