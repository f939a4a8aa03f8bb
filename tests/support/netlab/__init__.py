"""Network faults between real processes: namespaces, a bridge, iptables, tc and a delay proxy.

:mod:`.rules` builds the commands (pure, unit-tested), :mod:`.lab` runs
them and owns every namespace, link and process it creates, :mod:`.proxy`
adds latency (the kernel has no netem), :mod:`.servers` runs slotcache
servers inside namespaces and :mod:`.client` is the client process that
records its history there.
"""
