"""A network lab: namespaces on one bridge, with faults between them, always torn down.

Each host (a server, a client process) gets its own network namespace with
one veth on a bridge that the lab creates in the root namespace. The bridge
has the network's first address, so the test process (in the root
namespace) reaches every host directly; the hosts reach each other across
the bridge. Faults are iptables rules and tc qdiscs inside the hosts'
namespaces, and delay proxies listening on the bridge address, so nothing
outside what the lab created is touched.

Every namespace, link and process is removed by :meth:`NetLab.close`, which
a fixture finalizer calls; an ``atexit`` hook and a SIGTERM handler close
whatever a dying test process left open, and a new lab first removes the
leftovers of labs whose process is gone (names carry the creator's pid).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import itertools
import os
import random
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from slotcache.ctl.local import alive
from tests.support.netlab import rules
from tests.support.netlab.proxy import DelayProxy

TOOLS = ("ip", "iptables", "tc", "ss")
LOCK_DIR = Path("/run/lock/slotcache-netlab")
_serial = itertools.count()
_open_labs: set[NetLab] = set()
_guard = threading.Lock()
_signal_installed = False


def unavailable() -> str | None:
    """Why network faults cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network fault tests need root (network namespaces, iptables, tc)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (
            f"network fault tests need {', '.join(missing)} "
            "(Debian packages iproute2 and iptables; .ci/run installs them)"
        )
    return None


def run(argv: Sequence[str], check: bool = True) -> str:
    """Run one command; on failure raise with its error output."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def run_all(commands: Iterable[Sequence[str]]) -> None:
    for argv in commands:
        run(argv)


@dataclass(frozen=True, slots=True)
class Host:
    """One namespace of a lab, with its address on the lab's network."""

    name: str
    ns: str
    ip: str
    index: int

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]


class NetLab:
    """A bridge and its hosts; create with :meth:`create`, always :meth:`close`."""

    def __init__(self, tag: str, net: ipaddress.IPv4Network, lock: IO[str]) -> None:
        self.tag = tag
        self.net = net
        self.gateway = rules.gateway_address(net)
        self.hosts: list[Host] = []
        self.proxies: list[DelayProxy] = []
        self._lock = lock
        # Namespaces with faults to lift, and those with a rate limit among them.
        self._faulted: set[str] = set()
        self._limited: set[str] = set()
        self._processes: list[subprocess.Popen[bytes]] = []
        self._closed = False

    @classmethod
    def create(cls) -> NetLab:
        """A new, empty lab on a /24 nobody else uses (claimed with a lock file)."""
        _install_safety_net()
        sweep_leftovers()
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        rng = random.Random()
        used = _networks_in_use()
        while True:
            net = rules.pick_subnet(used, rng)
            lock = open(LOCK_DIR / f"{net.network_address}.lock", "w")  # noqa: SIM115
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                lock.close()
                used.append(str(net))
        lab = cls(rules.lab_tag(os.getpid(), next(_serial)), net, lock)
        with _guard:
            _open_labs.add(lab)
        try:
            run_all(rules.create_bridge(lab.tag, net))
        except BaseException:
            lab.close()
            raise
        return lab

    # ---- hosts and their processes ----------------------------------------------------

    def add_host(self, name: str) -> Host:
        """A new namespace on the bridge, with its own address."""
        index = len(self.hosts)
        host = Host(
            name, rules.namespace_name(self.tag, name), rules.host_address(self.net, index), index
        )
        self.hosts.append(host)
        run_all(rules.create_host(self.tag, self.net, index, host.ns))
        return host

    def spawn(self, host: Host, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``host``'s namespace; :meth:`close` kills it if still running."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                host.exec_argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._processes.append(proc)
        return proc

    # ---- faults --------------------------------------------------------------------------

    def _in(self, host: Host, commands: Sequence[rules.Argv]) -> None:
        self._in_each([(host, commands)])

    def _in_each(self, batches: Sequence[tuple[Host, Sequence[rules.Argv]]]) -> None:
        """Run each host's commands, all hosts at once, so a fault starts everywhere together."""
        procs = [
            (subprocess.Popen(rules.batch(h.ns, c), stderr=subprocess.PIPE, text=True), h)
            for h, c in batches
        ]
        errors = []
        for proc, host in procs:
            _, err = proc.communicate(timeout=30)
            self._faulted.add(host.ns)
            if proc.returncode != 0:
                errors.append(f"{host.name}: {err.strip()}")
        if errors:
            raise RuntimeError("fault commands failed: " + "; ".join(errors))

    def cut(self, a: Sequence[Host], b: Sequence[Host], one_way: bool = False) -> None:
        """Drop every packet between the groups ``a`` and ``b`` (only a -> b with ``one_way``)."""
        if one_way:
            sources = [x.ip for x in a]
            self._in_each([(y, [rules.drop_from(sources)]) for y in b])
            return
        ips = [y.ip for y in b]
        self._in_each([(x, [rules.drop_from(ips), rules.drop_to(ips)]) for x in a])

    def block_calls(self, callers: Sequence[Host], callees: Sequence[Host]) -> None:
        """``callers`` can no longer send requests to ``callees``; the reverse still works.

        A connection a caller already has open stays cut in the caller's
        direction only: the callee's replies and stream messages still arrive.
        """
        sources = [x.ip for x in callers]
        self._in_each([(y, [rules.drop_calls_from(sources)]) for y in callees])

    def lose(self, hosts: Sequence[Host], share: float, port: int) -> None:
        """Each of ``hosts`` drops ``share`` of the packets it receives to or from ``port``."""
        self._in_each([(h, rules.drop_share(share, port)) for h in hosts])

    def limit_rate(self, host: Host, rate: str, to: Host | None = None) -> None:
        """Limit what ``host`` sends (to ``to`` only, if given) to ``rate`` (tc syntax: 1mbit)."""
        self._in(host, rules.limit_rate(rate, to.ip if to is not None else None))
        self._limited.add(host.ns)

    def delay(self, src: Host, dest: Host, port: int) -> DelayProxy:
        """Route ``src``'s connections to ``dest:port`` through a proxy; set its ``delay_s``.

        The connections ``src`` has open are reset, so they come back
        through the proxy; the delay starts at zero.
        """
        proxy = DelayProxy(self.gateway, (dest.ip, port)).start()
        self.proxies.append(proxy)
        self._in(
            src,
            [
                rules.redirect(dest.ip, port, self.gateway, proxy.port),
                rules.reset_connections(dest.ip, port),
            ],
        )
        return proxy

    def heal(self) -> None:
        """Lift every fault: packet drops, rate limits and delays."""
        self._in_each(
            [
                (h, [*rules.heal(), *([rules.unlimit()] if h.ns in self._limited else [])])
                for h in self.hosts
                if h.ns in self._faulted
            ]
        )
        self._faulted.clear()
        self._limited.clear()
        for proxy in self.proxies:
            proxy.delay_s = 0.0

    # ---- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything the lab created; safe to call twice, from any failure state."""
        if self._closed:
            return
        self._closed = True
        for proxy in self.proxies:
            proxy.close()
        for proc in self._processes:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for host in self.hosts:
            remove_namespace(host.ns)
        run(["ip", "link", "del", rules.bridge_name(self.tag)], check=False)
        # Unlinked while still held: a lab choosing this network from now on
        # makes a new lock file (and sees no bridge on it any more).
        with contextlib.suppress(OSError):
            os.unlink(self._lock.name)
        self._lock.close()
        with _guard:
            _open_labs.discard(self)


def remove_namespace(ns: str) -> None:
    """Kill what still runs in ``ns`` (only processes a lab started there), then delete it."""
    for pid in run(["ip", "netns", "pids", ns], check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    run(["ip", "netns", "del", ns], check=False)


def sweep_leftovers() -> None:
    """Remove namespaces and links of labs whose creating process is gone."""
    for line in run(["ip", "netns", "list"], check=False).splitlines():
        ns = line.split()[0] if line.split() else ""
        pid = rules.owner_pid(ns)
        if pid is not None and not alive(pid):
            remove_namespace(ns)
    for line in run(["ip", "-o", "link", "show"], check=False).splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        pid = rules.owner_pid(name)
        if pid is not None and not alive(pid):
            run(["ip", "link", "del", name], check=False)


def _networks_in_use() -> list[str]:
    """Every IPv4 network the root namespace has an address or a route on."""
    used = []
    for line in run(["ip", "-o", "-4", "addr", "show"], check=False).splitlines():
        fields = line.split()
        if "inet" in fields:
            used.append(fields[fields.index("inet") + 1])
    for line in run(["ip", "-4", "route", "show"], check=False).splitlines():
        first = line.split()[0] if line.split() else ""
        if first and first != "default" and first[0].isdigit():
            used.append(first)
    return used


def close_all() -> None:
    """Close every lab of this process (the safety net behind the fixtures' finalizers)."""
    with _guard:
        labs = list(_open_labs)
    for lab in labs:
        with contextlib.suppress(Exception):
            lab.close()


def _install_safety_net() -> None:
    global _signal_installed
    if _signal_installed:
        return
    _signal_installed = True
    atexit.register(close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        close_all()
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
