"""Cluster membership as a pure state machine.

Inputs are bus messages and clock ticks (integer milliseconds from any
monotonic clock); outputs are messages to send and events. Nothing here
touches the network, so a test can run a thousand nodes in one process over
an in-memory transport with a fake clock.
"""
