"""A client run inside a container on the test's podman network (as a client pod would).

It must run with only the installed wheel, so it imports nothing from
tests/: the test passes this file's text to ``python3 -c``. Modes:

- ``write SEED N``: set keys k0..k(N-1); print how many were acknowledged.
- ``read SEED N``: print how many of k0..k(N-1) read back their value.
- ``pause SEED SECONDS``: set and get keys in a loop; print the longest gap
  between two successful calls and the number of calls that failed.
"""

import json
import sys
import time

import slotcache


def value(i: int) -> bytes:
    return f"value-{i}".encode()


def main() -> None:
    mode, seed, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    with slotcache.Client(seed, timeout=10.0) as cache:
        if mode == "write":
            done = sum(bool(cache.set(f"k{i}".encode(), value(i))) for i in range(int(arg)))
            print(json.dumps({"acknowledged": done}))
        elif mode == "read":
            found = sum(cache.get(f"k{i}".encode()) == value(i) for i in range(int(arg)))
            print(json.dumps({"found": found}))
        else:
            deadline = time.monotonic() + float(arg)
            last = time.monotonic()
            longest, failures, calls, i = 0.0, 0, 0, 0
            while time.monotonic() < deadline:
                key = f"p{i % 1000}".encode()
                i += 1
                try:
                    cache.set(key, value(i))
                    assert cache.get(key) == value(i)
                except Exception:
                    failures += 1
                    time.sleep(0.01)
                    continue
                now = time.monotonic()
                longest = max(longest, now - last)
                last = now
                calls += 1
            print(json.dumps({"longest_pause_s": longest, "failures": failures, "calls": calls}))


if __name__ == "__main__":
    main()
