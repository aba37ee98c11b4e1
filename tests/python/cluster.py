"""redis-py's cluster client, with its default settings, against raftnode.

    python cluster.py LEADER FOLLOWER

LEADER and FOLLOWER are client addresses (host:port) of the current leader
and of one follower. The script makes a `RedisCluster` from the FOLLOWER's
address alone, checks that it found the leader as the primary of every slot,
writes and reads back keys spread over many slots, then prints READY-FOR-KILL
and waits for a line on stdin: meanwhile the test kills the leader with
kill -9. The same client object must then keep working by itself — it has to
find the new leader from MOVED or CLUSTER SLOTS — so no call is retried here,
and not one call may fail: the followers stop naming the dead leader as soon
as its connections drop and hold commands until the new one is elected, which
RedisCluster's own retries ride out. The phase has an overall deadline. Every key written
before the kill must still be there, and new writes must work.

It prints a short transcript; any mismatch exits non-zero with a message.
"""

import signal
import sys
import time

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError

from common import check, expect, fail, log, parse_addr

KEYS = 600
# How long the client may take, all in all, to write and read back the keys
# after the kill.
AFTER_KILL_DEADLINE = 30.0


def primaries(rc):
    return sorted(n.name for n in rc.get_primaries())


def write_and_read(rc, prefix, count):
    written = {f"{prefix}:{i}": f"{prefix}-value-{i}".encode() for i in range(count)}
    for key, value in written.items():
        expect(f"SET {key}", rc.set(key, value), True)
    for key, value in written.items():
        expect(f"GET {key}", rc.get(key), value)
    return written


def main():
    if len(sys.argv) != 3:
        fail("usage: cluster.py LEADER FOLLOWER")
    leader, follower = sys.argv[1], sys.argv[2]
    log(f"redis-py {redis.__version__}")

    host, port = parse_addr(follower)
    rc = RedisCluster(host=host, port=port)
    nodes = sorted(n.name for n in rc.get_nodes())
    log(f"RedisCluster from the follower {follower}: nodes {', '.join(nodes)}; "
        f"primaries {', '.join(primaries(rc))}")
    expect("the cluster's primaries", primaries(rc), [leader])
    for slot in (0, 5461, 16383):
        owner = rc.nodes_manager.get_node_from_slot(slot).name
        expect(f"the primary of slot {slot}", owner, leader)
    expect("PING", rc.ping(), True)

    written = write_and_read(rc, "before-kill", KEYS)
    slots = {key_slot(k.encode()) for k in written}
    check(len(slots) >= KEYS * 0.9,
          f"the {KEYS} keys cover only {len(slots)} slots; they should spread")
    log(f"wrote and read back {KEYS} keys over {len(slots)} distinct slots "
        f"(slots {min(slots)}..{max(slots)}): ok")
    expect("GET of a missing key", rc.get("no-such-key"), None)
    expect("DEL before-kill:0", rc.delete("before-kill:0"), 1)
    expect("SET before-kill:0", rc.set("before-kill:0", written["before-kill:0"]), True)

    # Bonus: MGET split by slot, if the server has MGET.
    keys = list(written)[:50]
    try:
        values = rc.mget_nonatomic(keys)
    except redis.exceptions.ResponseError as e:
        log(f"mget_nonatomic: not available ({e})")
    else:
        expect("mget_nonatomic", values, [written[k] for k in keys])
        log(f"mget_nonatomic of {len(keys)} keys over many slots: ok")

    log("waiting for the leader to be killed")
    log("READY-FOR-KILL")
    line = sys.stdin.readline()
    expect("the line from the test", line.strip(), "killed")

    # From here on the client gets no help: no new client object, no
    # addresses, no topology refresh of ours, no retries of ours. Any error
    # fails the test.
    def too_slow(_signum, _frame):
        fail(f"the client was still not done {AFTER_KILL_DEADLINE:.0f} s after the kill")

    signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(int(AFTER_KILL_DEADLINE))
    start = time.monotonic()
    recovered = None

    def call(what, fn):
        nonlocal recovered
        try:
            result = fn()
        except RedisError as e:
            at = time.monotonic() - start
            fail(f"{what}: {type(e).__name__}: {e} at {at:.2f} s after the kill")
        if recovered is None:
            recovered = time.monotonic() - start
        return result

    expect("GET before-kill:0 (the first command after the kill)",
           call("GET before-kill:0", lambda: rc.get("before-kill:0")),
           written["before-kill:0"])
    new_leader = rc.nodes_manager.get_node_from_slot(key_slot(b"before-kill:0")).name
    check(new_leader != leader, f"the client still routes to the killed leader {leader}")
    log(f"after kill -9 of the leader: no call failed; the first one was answered "
        f"after {recovered:.2f} s, routing to the new leader {new_leader}; "
        f"primaries now {', '.join(primaries(rc))}")
    for key, value in written.items():
        expect(f"GET {key} after the kill", call(f"GET {key}", lambda: rc.get(key)), value)
    after = {f"after-kill:{i}": f"after-kill-value-{i}".encode() for i in range(KEYS)}
    for key, value in after.items():
        expect(f"SET {key}", call(f"SET {key}", lambda: rc.set(key, value)), True)
        expect(f"GET {key}", call(f"GET {key}", lambda: rc.get(key)), value)
    elapsed = time.monotonic() - start
    signal.alarm(0)
    log(f"all {len(written)} keys written before the kill read back, "
        f"{len(after)} new keys written and read back, in {elapsed:.2f} s, with no "
        f"failure: ok")
    rc.close()
    log("PASS")


if __name__ == "__main__":
    main()
