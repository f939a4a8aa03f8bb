from pathlib import Path

import pytest

from slotcache_server.config import MIB, ServerConfig, load_config, parse_size
from slotcache_server.keyspace import EvictionPolicy
from slotcache_server.persistence.policy import SnapshotPolicy


def test_defaults():
    config = load_config([], environ={})
    assert config == ServerConfig()
    assert config.host == "127.0.0.1"
    assert config.port == 7000
    assert config.max_key_bytes == 64 * 1024
    assert config.max_value_bytes == 16 * MIB
    assert config.sampler.keys_per_loop == 20
    assert config.sampler.budget_s == pytest.approx(0.025)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("4096", 4096),
        ("64k", 65536),
        ("64KiB", 65536),
        ("100mb", 100 * MIB),
        ("1g", 1024 * MIB),
        ("1 GB", 1024 * MIB),
        ("12b", 12),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "1.5g", "ten", "10q"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_flags_and_environment():
    env = {
        "SLOTCACHE_PORT": "7100",
        "SLOTCACHE_MAXMEMORY": "2mb",
        "SLOTCACHE_MAXMEMORY_POLICY": "allkeys-lru",
        "SLOTCACHE_EXPIRE_HZ": "50",
        "SLOTCACHE_DATA_DIR": "/tmp/x",
    }
    config = load_config(["--port", "7200", "--max-value-bytes", "1m"], environ=env)
    assert config.port == 7200  # the flag wins
    assert config.maxmemory == 2 * MIB
    assert config.maxmemory_policy is EvictionPolicy.ALLKEYS_LRU
    assert config.sampler.hz == 50
    assert config.data_dir == Path("/tmp/x")
    assert config.max_value_bytes == MIB


def test_restart_options():
    assert not ServerConfig().snapshot.enabled  # a restarted node starts empty unless asked
    assert ServerConfig().shutdown_failover
    config = load_config(
        ["--snapshot", "interval:30"], environ={"SLOTCACHE_SHUTDOWN_FAILOVER": "no"}
    )
    assert config.snapshot == SnapshotPolicy(on_shutdown=True, interval_s=30)
    assert not config.shutdown_failover


def test_proxy_flag_and_environment():
    assert not ServerConfig().proxy
    assert load_config(["--cluster-enabled", "yes", "--proxy", "yes"]).proxy
    env = {"SLOTCACHE_CLUSTER_ENABLED": "yes", "SLOTCACHE_PROXY": "yes"}
    assert load_config([], environ=env).proxy
    assert not load_config(["--proxy", "no"], environ=env).proxy


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--proxy", "yes"], {}, "--proxy yes needs --cluster-enabled yes"),
        ([], {"SLOTCACHE_PROXY": "perhaps"}, "SLOTCACHE_PROXY"),
        (["--port", "70000"], {}, "outside 1..65535"),
        (["--maxmemory-policy", "nope"], {}, "unknown eviction policy"),
        ([], {"SLOTCACHE_MAXMEMORY": "abc"}, "SLOTCACHE_MAXMEMORY"),
        (["--expire-cpu-percent", "0"], {}, "cpu percent"),
        (["--max-key-bytes", "0"], {}, "max key size"),
        (["--migration-cpu-percent", "0"], {}, "migration CPU percent"),
        ([], {"SLOTCACHE_MIGRATION_CPU_PERCENT": "150"}, "migration CPU percent"),
        (["--snapshot", "sometimes"], {}, "on-shutdown or interval:SECONDS"),
        ([], {"SLOTCACHE_SHUTDOWN_FAILOVER": "maybe"}, "SLOTCACHE_SHUTDOWN_FAILOVER"),
    ],
)
def test_bad_settings_exit_with_a_message(argv, env, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_config(argv, environ=env)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_message_limit_fits_the_largest_value():
    config = ServerConfig(max_value_bytes=100 * MIB)
    assert config.max_message_bytes > config.max_value_bytes + config.max_key_bytes


def test_maxmemory_from_the_downward_api_scaled_to_a_share_of_the_limit() -> None:
    """Kubernetes' resourceFieldRef gives limits.memory in bytes (divisor 1)."""
    env = {"SLOTCACHE_MAXMEMORY": "1073741824", "SLOTCACHE_MAXMEMORY_PERCENT": "75"}
    assert load_config([], environ=env).maxmemory == 805306368
    assert load_config([], environ={"SLOTCACHE_MAXMEMORY": "1073741824"}).maxmemory == 1 << 30
    assert load_config(["--maxmemory-percent", "50"], environ={}).maxmemory == 0


@pytest.mark.parametrize("bad", ["0", "101", "-5", "half"])
def test_maxmemory_percent_must_be_a_share(bad: str) -> None:
    with pytest.raises(SystemExit):
        load_config(["--maxmemory", "1g", "--maxmemory-percent", bad], environ={})
