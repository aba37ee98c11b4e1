"""redis-py's standalone client, with its default settings, against raftnode.

    python standalone.py LEADER FOLLOWER SEED [SEED ...]

LEADER and FOLLOWER are client addresses (host:port) of the current leader
and of one follower; the SEEDs are every node's client address. The script
talks to the leader (handshake, SET/GET/INCR/DEL, both kinds of pipeline,
INFO), checks that a follower answers a write with a MOVED naming the key's
slot and the leader, writes some keys, then prints READY-FOR-KILL and waits
for a line on stdin: meanwhile the test kills the leader with kill -9. It then
follows the failover the way an application with a standalone client would
(try the seeds, follow MOVED, wait out TRYAGAIN) and checks that every key
written before the kill is still there and that new writes work.

It prints a short transcript; any mismatch exits non-zero with a message.
"""

import sys
import time
import traceback

import redis
from redis.crc import key_slot
from redis.exceptions import (
    ConnectionError,
    MovedError,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from common import check, expect, fail, log, parse_addr

FAILOVER_DEADLINE = 20.0
KEYS_BEFORE_KILL = 200


def step(name, fn, *args):
    """Runs one part of the script; a redis-py error fails it with the part's
    name (the traceback goes to stderr)."""
    try:
        return fn(*args)
    except RedisError as e:
        traceback.print_exc()
        hint = ""
        if str(e).startswith("unknown command"):
            hint = (" (the server lacks a command redis-py sends: incr() sends INCRBY, "
                    "pipeline() sends MULTI and EXEC)")
        fail(f"{name}: {type(e).__name__}: {e}{hint}")


def handshake(r, leader):
    conn = r.connection_pool.get_connection()
    try:
        meta = conn.handshake_metadata
    finally:
        r.connection_pool.release(conn)
    check(meta is not None, "the client sent no HELLO (expected RESP3 by default)")
    proto = meta.get(b"proto", meta.get("proto"))
    expect("HELLO's proto in the connection handshake", proto, 3)
    # A map reply decodes to a dict only when the server really speaks RESP3.
    hello = r.execute_command("HELLO", 3)
    check(isinstance(hello, dict), f"HELLO 3 did not answer a RESP3 map: {hello!r}")
    expect("HELLO 3 proto", hello.get(b"proto"), 3)
    log(f"connected to the leader {leader}: handshake HELLO 3 answered proto=3 "
        f"({len(hello)} fields: {', '.join(k.decode() for k in hello)})")


def basics(r):
    value = b"hello\x00\xff world"
    expect("SET greeting", r.set("greeting", value), True)
    expect("GET greeting", r.get("greeting"), value)
    expect("GET of a missing key", r.get("no-such-key"), None)
    expect("INCR counter (absent)", r.incr("counter"), 1)
    expect("INCR counter", r.incr("counter"), 2)
    expect("GET counter", r.get("counter"), b"2")
    # Both keys in one slot ({g}), as a cluster-mode server may insist.
    expect("SET {g}greeting", r.set("{g}greeting", value), True)
    expect("DEL {g}greeting {g}missing", r.delete("{g}greeting", "{g}missing"), 1)
    expect("DEL greeting", r.delete("greeting"), 1)
    expect("GET after DEL", r.get("greeting"), None)
    log("set/get (binary value), missing key -> None, incr 1,2, delete -> 1: ok")


def pipelines(r):
    # The default pipeline is a transaction: MULTI ... EXEC (its keys in one
    # slot, {tx}, as a cluster-mode server may insist).
    p = r.pipeline()
    p.set("{tx}a", "1").incr("{tx}a").get("{tx}a").delete("{tx}a").get("{tx}a")
    p.incr("{tx}n").incr("{tx}n")
    expect("pipeline() (MULTI/EXEC) results", p.execute(), [True, 2, b"2", 1, None, 1, 2])
    log("pipeline() default (transaction=True, MULTI/EXEC) of 7 commands: ok")

    p = r.pipeline(transaction=False)
    want = []
    for i in range(50):
        p.set(f"pipe:{i}", f"value-{i}")
        want.append(True)
    for i in range(50):
        p.get(f"pipe:{i}")
        want.append(f"value-{i}".encode())
    got = p.execute()
    expect("pipeline(transaction=False) result count", len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        expect(f"pipeline(transaction=False) result {i}", g, w)
    log(f"pipeline(transaction=False) of {len(want)} commands, results in order: ok")


def info(r):
    info = r.info()
    check(isinstance(info, dict), f"INFO did not parse to a dict: {info!r}")
    expect("INFO role", info.get("role"), "leader")
    expect("INFO cluster_enabled", info.get("cluster_enabled"), 1)
    log(f"info(): {len(info)} fields, role={info['role']}, "
        f"cluster_enabled={info['cluster_enabled']}")


def moved_from_follower(follower, leader):
    host, port = parse_addr(follower)
    f = redis.Redis(host=host, port=port)
    expect("PING on the follower", f.ping(), True)
    key = b"written-at-a-follower"
    try:
        reply = f.set(key, "x")
    except MovedError as e:
        expect("MOVED slot", e.slot_id, key_slot(key))
        expect("MOVED address", f"{e.host}:{e.port}", leader)
        log(f"SET on the follower {follower}: MovedError slot_id={e.slot_id} "
            f"(key_slot={key_slot(key)}) -> {e.host}:{e.port} (the leader): ok")
    else:
        fail(f"SET on a follower answered {reply!r}, not MOVED")
    finally:
        f.close()


class FailoverClient:
    """What an application does with a standalone client when the server it
    talks to goes away: follow MOVED, try the seeds in turn, and leave an
    address that refused a connection alone for a second, until an overall
    deadline."""

    RETRY = (ConnectionError, TimeoutError, TryAgainError, MovedError)

    def __init__(self, seeds, client, addr):
        self.seeds = seeds
        self.client = client
        self.addr = addr
        self.down_until = {}
        self.next_seed = 0
        self.events = []

    def _switch(self, addr, why):
        self.events.append(f"{self.addr} -> {addr} ({why})")
        self.client.close()
        self.addr = addr
        host, port = parse_addr(addr)
        self.client = redis.Redis(host=host, port=port)

    def _up(self, addr):
        return self.down_until.get(addr, 0) <= time.monotonic()

    def _another_seed(self):
        for _ in range(len(self.seeds)):
            seed = self.seeds[self.next_seed % len(self.seeds)]
            self.next_seed += 1
            if seed != self.addr and self._up(seed):
                return seed
        return self.seeds[self.next_seed % len(self.seeds)]

    def call(self, what, fn, deadline):
        while True:
            try:
                return fn(self.client)
            except self.RETRY as e:
                error = e
            except ResponseError as e:
                # A write proposed but not seen committed in time; SET is
                # idempotent, so trying again is safe.
                if not str(e).startswith("TIMEOUT"):
                    raise
                error = e
            if time.monotonic() > deadline:
                fail(f"{what}: still failing after the {FAILOVER_DEADLINE:.0f} s "
                     f"deadline: {type(error).__name__}: {error}; "
                     f"switches so far: {self.events}")
            why = type(error).__name__
            if isinstance(error, (ConnectionError, TimeoutError)):
                self.down_until[self.addr] = time.monotonic() + 1.0
            if isinstance(error, MovedError):
                target = f"{error.host}:{error.port}"
                if self._up(target):
                    self._switch(target, f"MOVED {error.slot_id}")
                    continue
                why = f"MOVED to {target}, which refused a connection just now"
            time.sleep(0.05)
            self._switch(self._another_seed(), why)


def failover(leader, seeds):
    host, port = parse_addr(leader)
    r = redis.Redis(host=host, port=port)
    written = {f"before-kill:{i}": f"value-{i}".encode() for i in range(KEYS_BEFORE_KILL)}
    p = r.pipeline(transaction=False)
    for key, value in written.items():
        p.set(key, value)
    check(all(x is True for x in p.execute()), "a SET before the kill failed")
    log(f"wrote {len(written)} keys on the leader; waiting for it to be killed")
    log("READY-FOR-KILL")
    line = sys.stdin.readline()
    expect("the line from the test", line.strip(), "killed")

    start = time.monotonic()
    deadline = start + FAILOVER_DEADLINE
    app = FailoverClient(seeds, r, leader)
    for key, value in written.items():
        expect(f"GET {key} after the failover", app.call(f"GET {key}", lambda c: c.get(key), deadline), value)
    found = time.monotonic() - start
    check(app.addr != leader, f"still talking to the killed leader {leader}")
    for i in range(50):
        key, value = f"after-kill:{i}", f"new-{i}".encode()
        expect(f"SET {key}", app.call(f"SET {key}", lambda c: c.set(key, value), deadline), True)
        expect(f"GET {key}", app.call(f"GET {key}", lambda c: c.get(key), deadline), value)
    log(f"after kill -9 of the leader: {len(app.events)} switches "
        f"({'; '.join(app.events)}); new leader {app.addr} found in {found:.2f} s")
    log(f"all {len(written)} keys written before the kill read back; 50 new writes read back: ok")
    info = app.client.info()
    expect("INFO role on the new leader", info.get("role"), "leader")


def main():
    if len(sys.argv) < 4:
        fail("usage: standalone.py LEADER FOLLOWER SEED [SEED ...]")
    leader, follower, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
    log(f"redis-py {redis.__version__}")
    host, port = parse_addr(leader)
    r = redis.Redis(host=host, port=port)
    step("handshake", handshake, r, leader)
    step("set/get/incr/delete", basics, r)
    step("pipelines", pipelines, r)
    step("info", info, r)
    step("a write on a follower", moved_from_follower, follower, leader)
    r.close()
    step("failover", failover, leader, seeds)
    log("PASS")


if __name__ == "__main__":
    main()
