"""Cluster membership as a pure state machine.

Inputs are bus messages, clock ticks (integer milliseconds from any
monotonic clock) and operator commands, each with the few figures other
parts of the node know (:class:`step.Inputs`); the output of each is one
:class:`step.Step`: messages to send, events, and whether the node file
must be written. Nothing here touches the network, the disk or a clock, so
a test can run a thousand nodes in one process over an in-memory transport
with a fake clock. ``machine.Membership`` routes each input to the module
that owns that concern; ``membership_runtime`` applies the steps.
"""
