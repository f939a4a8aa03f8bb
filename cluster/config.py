"""Server configuration from command-line flags and ``SLOTCACHE_*`` environment variables.

Every option has one definition here: its flag, its environment variable,
its parser and its default. A flag beats the environment, which beats the
default, as operators expect from twelve-factor services and Kubernetes pods.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .keyspace import EvictionPolicy, SamplerConfig
from .observability.access_log import KeyMode
from .persistence.policy import SnapshotPolicy
from .security.tls_settings import ClientAuth, TlsSettings

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
ENV_PREFIX = "SLOTCACHE_"
# What a message needs beyond its largest key and value: field tags, lengths, metadata.
MESSAGE_FRAMING_BYTES = 64 * KIB

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": KIB, "m": MIB, "g": GIB}


def parse_size(text: str) -> int:
    """Parse a byte size such as ``100mb``, ``1g``, ``64KiB`` or ``4096`` (units are 1024-based)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"invalid size {text!r}; use a number of bytes, optionally with k, m or g")
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * _UNITS[unit]


def _number(kind: Callable[[str], Any], text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid {kind.__name__}") from None


def _int(text: str) -> int:
    value: int = _number(int, text)
    return value


def _float(text: str) -> float:
    value: float = _number(float, text)
    return value


def _port(text: str) -> int:
    port = _int(text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is outside 1..65535")
    return port


def _optional_port(text: str) -> int:
    """A port, or 0 for "off"."""
    return 0 if text.strip() == "0" else _port(text)


AUTO_PORT = -1


def _metrics_port(text: str) -> int:
    """``auto`` (the client port + 1000), 0 (off) or a port."""
    return AUTO_PORT if text.strip().lower() == "auto" else _optional_port(text)


def _count(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError(f"{value} must be >= 0")
    return value


def _positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise ValueError(f"{text} must be > 0")
    return value


def _pid(text: str) -> int:
    pid = _int(text)
    if pid < 1:
        raise ValueError(f"pid {pid} must be >= 1")
    return pid


_LOG_LEVELS = ("debug", "info", "warning", "error")


# --- Containers: maxmemory as a share of the memory limit ---
# Kubernetes can hand the container's memory limit to --maxmemory (downward API), but
# the interpreter, gRPC and buffers live beside the keyspace inside that limit.
MAXMEMORY_PERCENT = "maxmemory_percent"


def _percent(text: str) -> float:
    value = _float(text)
    if not 0 < value <= 100:
        raise ValueError(f"{text} must be in (0, 100]")
    return value


def _scale_maxmemory(values: dict[str, Any]) -> None:
    """Apply --maxmemory-percent to --maxmemory, in place."""
    percent = values.pop(MAXMEMORY_PERCENT, None)
    if percent is not None and "maxmemory" in values:
        values["maxmemory"] = int(values["maxmemory"] * percent / 100)


# --- end containers ---


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in _LOG_LEVELS:
        raise ValueError(f"unknown log level {text!r}; expected one of: {', '.join(_LOG_LEVELS)}")
    return level


_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


def parse_bool(text: str) -> bool:
    """Parse yes/no, true/false, on/off or 1/0, as Redis's config does."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not yes or no")


RESP_ROUTING = ("moved", "forward")


def _resp_routing(text: str) -> str:
    mode = text.strip().lower()
    if mode not in RESP_ROUTING:
        raise ValueError(f"unknown RESP routing {text!r}; expected moved or forward")
    return mode


EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def _event_loop(text: str) -> str:
    loop = text.strip().lower()
    if loop not in EVENT_LOOPS:
        raise ValueError(f"unknown event loop {text!r}; expected auto, asyncio or uvloop")
    return loop


def _node_timeout(text: str) -> int:
    value = _int(text)
    if value < 50:
        raise ValueError(f"node timeout {value} ms is below the 50 ms minimum")
    return value


@dataclass(frozen=True)
class ServerConfig:
    """Everything one node needs to start."""

    host: str = "127.0.0.1"
    port: int = 7000
    data_dir: Path = Path("data")
    maxmemory: int = 0
    maxmemory_policy: EvictionPolicy = EvictionPolicy.NOEVICTION
    maxmemory_samples: int = 5
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    max_key_bytes: int = 64 * KIB
    max_value_bytes: int = 16 * MIB
    shutdown_grace_s: float = 5.0
    log_level: str = "info"
    cluster_enabled: bool = False
    # 0 means the client port + 10000, as in Redis Cluster.
    bus_port: int = 0
    # The host other nodes and smart clients use to reach this node; defaults to --host.
    announce_host: str = ""
    node_timeout_ms: int = 15_000
    require_full_coverage: bool = True
    allow_reads_when_down: bool = False
    repl_backlog_bytes: int = 16 * MIB
    min_replicas: int = 0
    min_replicas_timeout_ms: int = 1000
    # The share of the source's time a slot migration's copy may take while the
    # node serves clients (see cluster/migration/pacing.py); 100 never pauses.
    migration_cpu_percent: float = 50.0
    # Near-cache invalidation bounds (see docs/near-cache-protocol.md).
    tracking_table_max_keys: int = 1_000_000
    tracking_max_keys_per_subscriber: int = 100_000
    tracking_queue_max_keys: int = 100_000
    # When the keyspace is written to the data directory (see docs/persistence.md).
    snapshot: SnapshotPolicy = field(default_factory=SnapshotPolicy)
    # On SIGTERM a primary first hands its slots to an in-sync replica.
    shutdown_failover: bool = True
    # A slotless node that forwards every call and never votes (see docs/cluster.md, "Proxy tier").
    proxy: bool = False
    # Start as the replacement of this process: wait for it to exit before
    # reading the data directory and binding (see cluster/takeover.py); 0: no.
    takeover_pid: int = 0
    takeover_timeout_s: float = 60.0
    # Telemetry (see docs/observability.md). The metrics port defaults to the
    # client port + 1000; AUTO_PORT marks that default, 0 turns the endpoint off.
    metrics_port: int = AUTO_PORT
    otlp_endpoint: str = ""
    access_log: str = ""
    access_log_sample: int = 100
    access_log_keys: KeyMode = KeyMode.TRUNCATE
    access_log_max_bytes: int = 64 * MIB
    access_log_keep: int = 5
    access_log_queue: int = 10_000
    slowlog_slower_than_us: int = 10_000
    slowlog_max_len: int = 128
    hotkeys_sample: int = 100
    hotkeys_capacity: int = 128
    # ---- users and permissions (see docs/security.md) ----
    # The ACL file of users, token hashes, permissions and key patterns (None: no users).
    acl_file: Path | None = None
    # With no users and no required client certificates, serve loopback clients only.
    protected_mode: bool = True
    # Transport security (see docs/security.md). --port 0 turns plaintext off.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_auth_clients: ClientAuth = ClientAuth.YES
    tls_port: int = 0
    tls_cluster: bool = False
    # ---- node authentication (see docs/security.md) ----
    # One secret per line: the first signs this node's bus calls, all are accepted.
    cluster_secret_file: Path | None = None
    # ---- Redis protocol (RESP) listener (see docs/resp.md) ----
    # 0 turns it off. moved: keys served elsewhere get -MOVED (cluster-aware
    # clients); forward: the node relays them to the owner (plain clients).
    resp_port: int = 0
    # A TLS RESP port beside (or instead of) the plaintext one; it serves the node's
    # certificate (--tls-cert-file ...) with --tls-auth-clients. 0 turns it off.
    resp_tls_port: int = 0
    resp_routing: str = "moved"
    # asyncio, uvloop, or auto: uvloop when the RESP port is on and uvloop is installed.
    event_loop: str = "auto"
    # ---- end of the RESP block ----

    # ---- input limits (see docs/security.md, "Limits") ----
    # 0: room for one maximal key and value plus framing, at least 64 MiB.
    max_message_bytes: int = 0
    max_pipeline_ops: int = 10_000
    max_keys_per_call: int = 100_000
    max_streams_per_connection: int = 1_000
    tracking_max_subscribers: int = 10_000
    # ---- end of input limits ----

    def __post_init__(self) -> None:
        self._check_input_limits()
        self.tls.check(self.port, self.cluster_enabled)
        self._check_resp_tls()
        if self.proxy and not self.cluster_enabled:
            raise ValueError(
                "--proxy yes needs --cluster-enabled yes: a proxy forwards to a cluster"
            )
        if self.cluster_enabled and self.bus_port == 0 and self.client_port + 10000 > 65535:
            raise ValueError(
                f"port {self.client_port} leaves no room for the bus port; set --bus-port"
            )
        if self.max_key_bytes < 1:
            raise ValueError("max key size must be >= 1 byte")
        if self.max_value_bytes < 0:
            raise ValueError("max value size must be >= 0 bytes")
        if self.maxmemory_samples < 1:
            raise ValueError("maxmemory samples must be >= 1")
        if self.repl_backlog_bytes < 1024:
            raise ValueError("replication backlog must be at least 1kb")
        if self.min_replicas < 0:
            raise ValueError("min replicas must be >= 0")
        if self.min_replicas_timeout_ms < 1:
            raise ValueError("min replicas timeout must be >= 1 ms")
        if not 0 < self.migration_cpu_percent <= 100:
            raise ValueError("migration CPU percent must be in (0, 100]")
        if (
            min(
                self.tracking_table_max_keys,
                self.tracking_max_keys_per_subscriber,
                self.tracking_queue_max_keys,
            )
            < 1
        ):
            raise ValueError("tracking limits must be >= 1")
        if self.access_log_sample < 1:
            raise ValueError("access log sample must be >= 1 (1 logs every call)")
        if self.access_log_queue < 1:
            raise ValueError("access log queue must hold >= 1 entry")
        if self.hotkeys_capacity < 1:
            raise ValueError("hot-key capacity must be >= 1")

    @property
    def address(self) -> str:
        """``host:port`` to listen on for plaintext clients (port 0: none)."""
        return f"{self.host}:{self.port}"

    @property
    def tls(self) -> TlsSettings:
        """The TLS flags together."""
        return TlsSettings(
            self.tls_cert_file,
            self.tls_key_file,
            self.tls_ca_file,
            self.tls_auth_clients,
            self.tls_port,
            self.tls_cluster,
        )

    @property
    def client_port(self) -> int:
        """The client port announced to peers and clients (see TlsSettings.announced_port)."""
        return self.tls.announced_port(self.port)

    @property
    def cluster_bus_port(self) -> int:
        """The bus port actually used: by default the announced client port + 10000."""
        return self.bus_port or self.client_port + 10000

    # ---- Redis protocol (RESP) listener ----
    def _check_resp_tls(self) -> None:
        if not self.resp_tls_port:
            return
        if not self.tls.enabled:
            raise ValueError(
                "--resp-tls-port serves the node's TLS certificate: turn TLS on "
                "(--tls-port, --tls-cert-file, --tls-key-file)"
            )
        if self.resp_tls_port == self.resp_port:
            raise ValueError(f"--resp-tls-port and --resp-port are both {self.resp_port}")

    @property
    def announced_resp_port(self) -> int:
        """The RESP port peers tell clients about (CLUSTER SLOTS, MOVED), as for the client port.

        The TLS one when node-to-node traffic is TLS or plaintext RESP is off.
        """
        if self.resp_tls_port and (self.tls_cluster or not self.resp_port):
            return self.resp_tls_port
        return self.resp_port

    # ---- end of the RESP block ----

    @property
    def public_host(self) -> str:
        """The host advertised to peers and clients."""
        return self.announce_host or self.host

    # ---- input limits ----
    def _check_input_limits(self) -> None:
        """Resolve the automatic message limit and refuse limits no call could live with.

        The message limit is given its automatic value here (the dataclass is
        frozen, hence ``object.__setattr__``) so that every reader sees one
        number. gRPC's default of 4 MiB would refuse values well under the
        value limit, with a less helpful error than our own check gives.
        """
        room = self.max_key_bytes + self.max_value_bytes + MESSAGE_FRAMING_BYTES
        if self.max_message_bytes == 0:
            object.__setattr__(self, "max_message_bytes", max(room, 64 * MIB))
        elif self.max_message_bytes < room:
            raise ValueError(
                f"max message bytes {self.max_message_bytes} leaves no room for the largest "
                f"key and value ({room} bytes with framing); lower --max-value-bytes too"
            )
        if (
            min(
                self.max_pipeline_ops,
                self.max_keys_per_call,
                self.max_streams_per_connection,
                self.tracking_max_subscribers,
            )
            < 1
        ):
            raise ValueError("input limits must be >= 1")

    # ---- end of input limits ----

    @property
    def metrics_listen_port(self) -> int:
        """The Prometheus port to use (0: none): ``auto`` resolves to the client port + 1000."""
        if self.metrics_port != AUTO_PORT:
            return self.metrics_port
        return self.client_port + 1000 if 0 < self.client_port <= 64535 else 0


@dataclass(frozen=True)
class _Option:
    flag: str
    dest: str
    parse: Callable[[str], Any]
    help: str
    metavar: str = "VALUE"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").replace("-", "_").upper()


_OPTIONS: tuple[_Option, ...] = (
    _Option("--host", "host", str, "address to listen on", "HOST"),
    _Option("--port", "port", _optional_port, "plaintext client port (0: none)", "PORT"),
    _Option("--data-dir", "data_dir", Path, "directory for the node's files", "DIR"),
    _Option("--maxmemory", "maxmemory", parse_size, "memory limit; 0 means none", "SIZE"),
    _Option("--maxmemory-policy", "maxmemory_policy", EvictionPolicy.parse, "eviction policy"),
    _Option("--maxmemory-samples", "maxmemory_samples", _int, "keys sampled per eviction", "N"),
    _Option("--expire-hz", "expire_hz", _positive_float, "expiry sampler cycles per second", "HZ"),
    _Option("--expire-keys-per-loop", "expire_keys_per_loop", _int, "keys per sample", "N"),
    _Option(
        "--expire-stale-percent",
        "expire_stale_percent",
        _float,
        "keep sampling while more than this share of a sample had expired",
        "PCT",
    ),
    _Option("--expire-cpu-percent", "expire_cpu_percent", _float, "CPU share of each cycle", "PCT"),
    _Option("--max-key-bytes", "max_key_bytes", parse_size, "largest accepted key", "SIZE"),
    _Option("--max-value-bytes", "max_value_bytes", parse_size, "largest accepted value", "SIZE"),
    _Option(
        "--shutdown-grace",
        "shutdown_grace_s",
        _float,
        "seconds SIGTERM may take to hand off the slots and drain calls",
        "SECS",
    ),
    _Option(
        "--snapshot",
        "snapshot",
        SnapshotPolicy.parse,
        "write the keyspace to the data directory: off, on-shutdown or interval:SECONDS",
        "WHEN",
    ),
    _Option(
        "--shutdown-failover",
        "shutdown_failover",
        parse_bool,
        "on SIGTERM a primary first fails over to an in-sync replica (yes/no)",
        "YES|NO",
    ),
    _Option(
        "--takeover-pid",
        "takeover_pid",
        _pid,
        "replace this running node: load and bind only once that process has exited",
        "PID",
    ),
    _Option(
        "--takeover-timeout",
        "takeover_timeout_s",
        _positive_float,
        "seconds to wait for the --takeover-pid process to exit before giving up",
        "SECS",
    ),
    _Option("--log-level", "log_level", _log_level, "debug, info, warning or error", "LEVEL"),
    _Option(
        "--cluster-enabled", "cluster_enabled", parse_bool, "join a cluster (yes/no)", "YES|NO"
    ),
    _Option(
        "--proxy",
        "proxy",
        parse_bool,
        "a slotless node that forwards every call and never votes (yes/no; needs cluster mode)",
        "YES|NO",
    ),
    _Option("--bus-port", "bus_port", _port, "cluster bus port (default: port + 10000)", "PORT"),
    _Option(
        "--announce-host", "announce_host", str, "host peers and clients use to reach us", "HOST"
    ),
    _Option("--node-timeout", "node_timeout_ms", _node_timeout, "failure detection timeout", "MS"),
    _Option(
        "--require-full-coverage",
        "require_full_coverage",
        parse_bool,
        "refuse requests when any slot is uncovered",
        "YES|NO",
    ),
    _Option(
        "--allow-reads-when-down",
        "allow_reads_when_down",
        parse_bool,
        "serve reads for owned slots while the cluster is down",
        "YES|NO",
    ),
    _Option(
        "--repl-backlog-size",
        "repl_backlog_bytes",
        parse_size,
        "recent writes kept for replicas that reconnect",
        "SIZE",
    ),
    _Option(
        "--min-replicas",
        "min_replicas",
        _int,
        "replicas that must hold a write before it is acknowledged, unless the write says",
        "N",
    ),
    _Option(
        "--migration-cpu-percent",
        "migration_cpu_percent",
        _float,
        "share of time a slot migration's copy may take while clients are served",
        "PCT",
    ),
    _Option(
        "--min-replicas-timeout",
        "min_replicas_timeout_ms",
        _int,
        "how long a write waits for its replicas",
        "MS",
    ),
    _Option(
        "--tracking-table-max-keys",
        "tracking_table_max_keys",
        _int,
        "near-cache tracking registrations kept for all subscribers together",
        "N",
    ),
    _Option(
        "--tracking-max-keys-per-subscriber",
        "tracking_max_keys_per_subscriber",
        _int,
        "near-cache tracking registrations kept for one subscriber",
        "N",
    ),
    _Option(
        "--tracking-queue-max-keys",
        "tracking_queue_max_keys",
        _int,
        "invalidations waiting for a slow subscriber before they become one flush",
        "N",
    ),
    _Option(
        "--metrics-port",
        "metrics_port",
        _metrics_port,
        "Prometheus /metrics port: auto (client port + 1000, the default), 0 (off) or a port",
        "PORT",
    ),
    _Option(
        "--otlp-endpoint", "otlp_endpoint", str, "also push metrics over OTLP/gRPC here", "URL"
    ),
    _Option("--access-log", "access_log", str, "access log file, or stderr (default off)", "PATH"),
    _Option(
        "--access-log-sample",
        "access_log_sample",
        _int,
        "log 1 in N successful calls (failed and slow ones always)",
        "N",
    ),
    _Option("--access-log-keys", "access_log_keys", KeyMode.parse, "truncate or hash keys", "MODE"),
    _Option(
        "--access-log-max-size",
        "access_log_max_bytes",
        parse_size,
        "rotate the access log at this size",
        "SIZE",
    ),
    _Option("--access-log-keep", "access_log_keep", _count, "rotated access logs kept", "N"),
    _Option(
        "--access-log-queue",
        "access_log_queue",
        _int,
        "entries waiting for the writer before new ones are dropped",
        "N",
    ),
    _Option(
        "--slowlog-slower-than",
        "slowlog_slower_than_us",
        _count,
        "slow-log threshold in microseconds",
        "US",
    ),
    _Option("--slowlog-max-len", "slowlog_max_len", _count, "slow-log entries kept", "N"),
    _Option(
        "--hotkeys-sample",
        "hotkeys_sample",
        _count,
        "sample 1 in N key accesses for hot keys (0: off)",
        "N",
    ),
    _Option("--hotkeys-capacity", "hotkeys_capacity", _int, "hot keys tracked", "N"),
    # ---- users and permissions ----
    _Option(
        "--acl-file",
        "acl_file",
        Path,
        "users with token hashes, permissions and key patterns; reloaded on SIGHUP",
        "PATH",
    ),
    _Option(
        "--protected-mode",
        "protected_mode",
        parse_bool,
        "without users or client certificates, serve loopback clients only (yes/no)",
        "YES|NO",
    ),
    # Transport security (see docs/security.md).
    _Option("--tls-port", "tls_port", _optional_port, "TLS client port (0: none)", "PORT"),
    _Option("--tls-cert-file", "tls_cert_file", Path, "this node's certificate (PEM)", "PATH"),
    _Option("--tls-key-file", "tls_key_file", Path, "the certificate's private key", "PATH"),
    _Option(
        "--tls-ca-file", "tls_ca_file", Path, "CA that signs client and node certificates", "PATH"
    ),
    _Option(
        "--tls-auth-clients",
        "tls_auth_clients",
        ClientAuth.parse,
        "TLS clients must present a certificate: yes (the default), no or optional",
        "YES|NO|OPTIONAL",
    ),
    _Option(
        "--tls-cluster",
        "tls_cluster",
        parse_bool,
        "bus, replication, migration and forwarding use mutual TLS (yes/no)",
        "YES|NO",
    ),
    # ---- node authentication ----
    _Option(
        "--cluster-secret-file",
        "cluster_secret_file",
        Path,
        "file of cluster secrets (one per line, the first signs) that authenticate bus calls",
        "PATH",
    ),
    # ---- Redis protocol (RESP) listener ----
    _Option(
        "--resp-port",
        "resp_port",
        _optional_port,
        "Redis-protocol port (0: off, the default)",
        "PORT",
    ),
    _Option(
        "--resp-tls-port",
        "resp_tls_port",
        _optional_port,
        "Redis-protocol TLS port (0: off, the default; needs the node's TLS files)",
        "PORT",
    ),
    _Option(
        "--resp-routing",
        "resp_routing",
        _resp_routing,
        "keys served elsewhere: moved (answer -MOVED) or forward (relay to the owner)",
        "MODE",
    ),
    _Option(
        "--event-loop",
        "event_loop",
        _event_loop,
        "asyncio, uvloop, or auto (uvloop when --resp-port is on and uvloop is installed)",
        "LOOP",
    ),
    # ---- end of the RESP block ----
    # ---- input limits (see docs/security.md, "Limits") ----
    _Option(
        "--max-message-bytes",
        "max_message_bytes",
        parse_size,
        "largest gRPC message accepted (default: room for the largest key and value, "
        "at least 64mb)",
        "SIZE",
    ),
    _Option(
        "--max-pipeline-ops", "max_pipeline_ops", _int, "operations in one Pipeline message", "N"
    ),
    _Option(
        "--max-keys-per-call",
        "max_keys_per_call",
        _int,
        "keys in one MGet, MSet or MDelete (unary or in a Pipeline)",
        "N",
    ),
    _Option(
        "--max-streams-per-connection",
        "max_streams_per_connection",
        _int,
        "concurrent calls on one client connection (HTTP/2 max concurrent streams)",
        "N",
    ),
    _Option(
        "--tracking-max-subscribers",
        "tracking_max_subscribers",
        _int,
        "open Subscribe streams on this node",
        "N",
    ),
    # ---- end of input limits ----
    # --- Containers: maxmemory as a share of the memory limit ---
    _Option(
        "--maxmemory-percent",
        MAXMEMORY_PERCENT,
        _percent,
        "use this share of --maxmemory (e.g. a container's memory limit), leaving the rest "
        "for the process itself",
        "PCT",
    ),
    # --- end containers ---
)


def _with_message(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Let argparse show our explanation instead of a bare "invalid value"."""

    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return wrapped


def build_parser() -> argparse.ArgumentParser:
    """The ``slotcache-server`` argument parser; each option also reads ``SLOTCACHE_*``."""
    parser = argparse.ArgumentParser(
        prog="slotcache-server",
        description="Run one slotcache node.",
        epilog="Every flag can also be given as an environment variable, e.g. "
        "--maxmemory as SLOTCACHE_MAXMEMORY. Flags win over the environment.",
    )
    for opt in _OPTIONS:
        parser.add_argument(
            opt.flag,
            dest=opt.dest,
            metavar=opt.metavar,
            type=_with_message(opt.parse),
            default=None,
            help=f"{opt.help} (env {opt.env})",
        )
    return parser


def load_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """Build the configuration; bad flags or variables exit with a message naming them."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for opt in _OPTIONS:
        value = args[opt.dest]
        if value is None and opt.env in env:
            try:
                value = opt.parse(env[opt.env])
            except ValueError as exc:
                parser.error(f"{opt.env}={env[opt.env]!r}: {exc}")
        if value is not None:
            values[opt.dest] = value
    _scale_maxmemory(values)
    defaults = SamplerConfig()
    sampler_values = {
        name: values.pop(f"expire_{name}", getattr(defaults, name))
        for name in ("hz", "keys_per_loop", "stale_percent", "cpu_percent")
    }
    try:
        values["sampler"] = SamplerConfig(**sampler_values)
        known = {f.name for f in fields(ServerConfig)}
        return ServerConfig(**{k: v for k, v in values.items() if k in known})
    except ValueError as exc:
        parser.error(str(exc))
