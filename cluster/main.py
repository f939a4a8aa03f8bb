"""``slotcache-server``: run one node until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from .config import ServerConfig, load_config
from .lifecycle import freeze_imports, leave, process_age_s
from .node import Node, StartupError
from .security.undecodable import quiet_undecodable_requests
from .takeover import TakeoverError, take_over

log = logging.getLogger("slotcache")


async def serve(config: ServerConfig) -> int:
    """Serve until a termination signal arrives, then drain and return the exit status."""
    try:
        node = Node(config)
        await node.start()
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_shutdown)
    # SIGHUP reads the ACL file again; a bad one is logged and changes nothing.
    loop.add_signal_handler(signal.SIGHUP, node.access.reload)
    log.info(
        "slotcache-server ready on %s:%d (data in %s)", config.host, node.port, config.data_dir
    )
    # A signal, or the Admin Shutdown RPC.
    await node.shutdown_requested.wait()
    # The handoff and the drain share the grace; Node.stop logs the drain it leaves.
    log.info("shutting down within %.1fs", config.shutdown_grace_s)
    await node.stop()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; after a clean start the process ends here (see lifecycle.leave)."""
    config = load_config(argv)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_undecodable_requests()
    freeze_imports()
    log.info("started in %.2fs (cpu %.2fs)", process_age_s(), time.process_time())
    if config.takeover_pid:
        try:
            take_over(config.data_dir, config.takeover_pid, config.takeover_timeout_s)
        except TakeoverError as exc:
            log.error("%s", exc)
            return 1
    leave(run_loop(config, serve(config)))


def run_loop(config: ServerConfig, main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on the event loop the configuration asks for.

    uvloop cuts the Redis-protocol listener's per-request cost (its
    transports and polling are C), and grpc.aio runs on it unchanged; so
    ``auto`` picks it when the RESP port is on and uvloop is installed.
    """
    wanted = config.event_loop
    if wanted == "auto":
        resp = config.resp_port or config.resp_tls_port
        wanted = "uvloop" if resp and _has_uvloop() else "asyncio"
    if wanted == "uvloop":
        import uvloop

        log.info("event loop: uvloop")
        return uvloop.run(main)
    return asyncio.run(main)


def _has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


if __name__ == "__main__":
    sys.exit(main())
