"""Helpers for ``scripts/bench``, the side-by-side benchmark of slotcache against a reference.

Pure logic (statistics, result records, table building, wire framing, output
parsing) lives in modules of its own, apart from the modules that start
processes and drive load, so it can be unit-tested and reused.
"""
