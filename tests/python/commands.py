"""redis-py's methods for the string, key and expiry commands, against raftnode.

    python commands.py LEADER

LEADER is the leader's client address (host:port). The script calls each
method the way an application would, with redis-py's default settings
(RESP3), then the same through redis-py's cluster client, and checks what
redis-py hands back. It prints a short transcript; any mismatch exits
non-zero with a message.
"""

import sys
import time

import redis
from redis.cluster import RedisCluster

from common import check, expect, log, parse_addr


def standalone(r):
    r.flushall()
    # The lock idiom: SET key value NX EX seconds.
    expect("SET NX EX", r.set("lock", "me", nx=True, ex=10), True)
    expect("SET NX EX again", r.set("lock", "you", nx=True, ex=10), None)
    check(r.ttl("lock") in (9, 10), f"TTL lock: {r.ttl('lock')}")
    check(9000 < r.pttl("lock") <= 10000, f"PTTL lock: {r.pttl('lock')}")
    expect("SET GET", r.set("lock", "x", get=True, keepttl=True), b"me")
    check(r.ttl("lock") > 0, "KEEPTTL kept the TTL")
    expect("SET XX on a missing key", r.set("none", "1", xx=True), None)

    expect("MSET", r.mset({"a": "1", "b": "2"}), True)
    expect("MGET", r.mget("a", "b", "c"), [b"1", b"2", None])
    expect("MSETNX", r.msetnx({"a": "x", "z": "1"}), False)
    expect("SETNX", r.setnx("n", "5"), True)
    expect("GETSET", r.getset("n", "6"), b"5")
    expect("EXISTS", r.exists("a", "b", "c", "a"), 3)
    expect("TOUCH", r.touch("a", "zz"), 1)
    expect("TYPE", r.type("a"), b"string")
    expect("TYPE missing", r.type("zz"), b"none")
    expect("STRLEN", r.strlen("lock"), 1)
    expect("SETRANGE", r.setrange("s", 2, "hi"), 4)
    expect("GETRANGE", r.getrange("s", 2, -1), b"hi")
    expect("INCRBYFLOAT", r.incrbyfloat("f", 10.5), 10.5)
    expect("INCRBYFLOAT again", r.incrbyfloat("f", 0.1), 10.6)
    expect("DECRBY", r.decrby("n", 10), -4)

    expect("EXPIRE GT without a TTL", r.expire("a", 100, gt=True), False)
    expect("EXPIRE", r.expire("a", 100), True)
    expect("EXPIRE LT", r.expire("a", 50, lt=True), True)
    check(r.ttl("a") in (49, 50), f"TTL a: {r.ttl('a')}")
    at = int(time.time()) + 1000
    expect("EXPIREAT", r.expireat("b", at), True)
    expect("EXPIRETIME", r.expiretime("b"), at)
    expect("PEXPIRETIME", r.pexpiretime("b"), at * 1000)
    expect("PERSIST", r.persist("b"), True)
    expect("TTL without one", r.ttl("b"), -1)
    expect("TTL missing", r.ttl("missing"), -2)
    expect("GETEX PX", r.getex("b", px=5000), b"2")
    check(4000 < r.pttl("b") <= 5000, f"PTTL b: {r.pttl('b')}")
    expect("GETDEL", r.getdel("b"), b"2")
    expect("GETDEL again", r.getdel("b"), None)

    expect("RENAME", r.rename("a", "a2"), True)
    check(r.ttl("a2") > 0, "RENAME carried the TTL")
    r.set("z", "26")
    expect("RENAMENX", r.renamenx("a2", "z"), False)
    expect("COPY", r.copy("a2", "a3"), True)
    expect("COPY again", r.copy("a2", "a3"), False)
    expect("COPY REPLACE", r.copy("z", "a3", replace=True), True)
    expect("UNLINK", r.unlink("a3", "nothing"), 1)

    keys = sorted(r.keys("*"))
    expect("KEYS", keys, sorted([b"lock", b"a2", b"z", b"n", b"s", b"f"]))
    expect("KEYS pattern", sorted(r.keys("[az]*")), [b"a2", b"z"])
    expect("SCAN", sorted(r.scan_iter(count=2)), keys)
    expect("SCAN MATCH", sorted(r.scan_iter(match="a*", count=1)), [b"a2"])
    expect("DBSIZE", r.dbsize(), len(keys))
    check(r.randomkey() in keys, "RANDOMKEY is a key")

    r.set("short", "v", px=100)
    deadline = time.time() + 5
    while r.exists("short") and time.time() < deadline:
        time.sleep(0.02)
    expect("an expired key", r.get("short"), None)
    expect("DBSIZE after expiry", r.dbsize(), len(keys))

    expect("FLUSHALL", r.flushall(), True)
    expect("DBSIZE after FLUSHALL", r.dbsize(), 0)
    expect("RANDOMKEY of nothing", r.randomkey(), None)
    log("standalone: ok")


def cluster(rc):
    rc.flushall()
    # One MSET per slot: a list of their replies.
    done = rc.mset_nonatomic({"{u}a": "1", "{u}b": "2", "c": "3"})
    check(done and all(ok is True for ok in done), f"cluster MSET: {done!r}")
    expect("cluster MGET", rc.mget_nonatomic(["{u}a", "{u}b", "c", "d"]),
           [b"1", b"2", b"3", None])
    expect("cluster EXPIRE", rc.expire("c", 100), True)
    check(rc.ttl("c") in (99, 100), f"cluster TTL: {rc.ttl('c')}")
    expect("cluster KEYS", sorted(rc.keys("*")), [b"c", b"{u}a", b"{u}b"])
    expect("cluster SCAN", sorted(rc.scan_iter(count=1)), [b"c", b"{u}a", b"{u}b"])
    expect("cluster DBSIZE", rc.dbsize(), 3)
    log("cluster: ok")


def main():
    host, port = parse_addr(sys.argv[1])
    standalone(redis.Redis(host=host, port=port))
    cluster(RedisCluster(host=host, port=port))
    log("PASS")


if __name__ == "__main__":
    main()
