//! The string, key and expiry commands, applied to a store directly: their
//! edge cases as Redis defines them, and expiry decided by the replicated
//! clock alone.

use super::*;
use crate::node::StateMachine;

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A store that applies entries stamped with the times the test gives.
struct Store {
    kv: Kv,
    index: Index,
}

impl Store {
    fn new() -> Store {
        Store {
            kv: Kv::new(),
            index: 0,
        }
    }

    /// Applies `command` as the leader would propose it at `now_ms`.
    fn at(&mut self, now_ms: u64, command: Command) -> Outcome {
        self.index += 1;
        let stamped = Command::Stamped {
            now_ms,
            command: Box::new(command),
        };
        self.kv.apply_command(self.index, stamped)
    }

    fn read(&self, now_ms: u64, read: Read) -> QueryReply {
        self.kv.read(now_ms, &read)
    }

    fn get(&self, now_ms: u64, key: &str) -> Option<Vec<u8>> {
        match self.read(now_ms, Read::Get { key: b(key) }) {
            QueryReply::Value(v) => v,
            other => panic!("GET answered {other:?}"),
        }
    }

    fn ttl(&self, now_ms: u64, key: &str) -> i64 {
        let read = Read::Ttl {
            key: b(key),
            millis: true,
            absolute: false,
        };
        match self.read(now_ms, read) {
            QueryReply::Integer(n) => n,
            other => panic!("PTTL answered {other:?}"),
        }
    }
}

fn set(key: &str, value: &str) -> Command {
    Command::Set {
        key: b(key),
        value: b(value),
    }
}

fn set_with(key: &str, value: &str, condition: Condition, get: bool, expiry: Expiry) -> Command {
    Command::SetWith {
        key: b(key),
        value: b(value),
        condition,
        get,
        expiry,
    }
}

fn expire(key: &str, when_ms: i64, relative: bool, condition: ExpireCondition) -> Command {
    Command::Expire {
        key: b(key),
        when_ms,
        relative,
        condition,
    }
}

fn value(v: &str) -> Outcome {
    Outcome::Value(Some(b(v)))
}

const T: u64 = 1_700_000_000_000;

#[test]
fn set_with_conditions_get_and_times_to_live() {
    let mut s = Store::new();
    use Condition::*;
    // SET NX EX: the lock idiom.
    assert_eq!(
        s.at(
            T,
            set_with("lock", "me", IfAbsent, false, Expiry::In(10_000))
        ),
        Outcome::Done
    );
    assert_eq!(
        s.at(
            T + 1,
            set_with("lock", "you", IfAbsent, false, Expiry::In(10_000))
        ),
        Outcome::Value(None),
        "NX on an existing key: nil"
    );
    assert_eq!(s.ttl(T + 1, "lock"), 9_999);
    // GET with a condition that fails still answers the old value.
    assert_eq!(
        s.at(T + 2, set_with("lock", "x", IfAbsent, true, Expiry::Clear)),
        value("me")
    );
    // SET GET on a missing key: nil, and the key is set.
    assert_eq!(
        s.at(T + 3, set_with("new", "1", Always, true, Expiry::Clear)),
        Outcome::Value(None)
    );
    assert_eq!(s.get(T + 3, "new"), Some(b("1")));
    // XX on a missing key sets nothing.
    assert_eq!(
        s.at(
            T + 4,
            set_with("none", "1", IfPresent, false, Expiry::Clear)
        ),
        Outcome::Value(None)
    );
    assert_eq!(s.get(T + 4, "none"), None);
    // KEEPTTL keeps the deadline; a plain SET clears it.
    s.at(T + 5, set_with("lock", "kept", Always, false, Expiry::Keep));
    assert_eq!(s.ttl(T + 5, "lock"), 9_995);
    s.at(T + 6, set("lock", "plain"));
    assert_eq!(s.ttl(T + 6, "lock"), -1);
    // A deadline already passed: OK, and the key is absent.
    assert_eq!(
        s.at(T + 7, set_with("gone", "v", Always, false, Expiry::At(T))),
        Outcome::Done
    );
    assert_eq!(s.get(T + 7, "gone"), None);
    assert_eq!(s.kv.len(), 2, "and not stored at all");
    // EXAT in the future.
    s.at(
        T + 8,
        set_with("at", "v", Always, false, Expiry::At(T + 1_000)),
    );
    assert_eq!(s.ttl(T + 8, "at"), 992);
}

#[test]
fn a_key_is_gone_for_reads_at_its_deadline_and_for_writes_at_the_clock() {
    let mut s = Store::new();
    s.at(
        T,
        set_with("k", "5", Condition::Always, false, Expiry::In(100)),
    );
    assert_eq!(s.get(T + 99, "k"), Some(b("5")));
    // A read at the leader's time sees it gone, though nothing was applied.
    assert_eq!(s.get(T + 100, "k"), None);
    assert_eq!(s.ttl(T + 100, "k"), -2);
    assert_eq!(s.read(T + 100, Read::DbSize), QueryReply::Integer(0));
    assert_eq!(s.kv.len(), 1, "still held until a write or active expiry");
    // A write stamped after the deadline finds no key: INCR starts at 0.
    assert_eq!(
        s.at(T + 100, Command::Incr { key: b("k") }),
        Outcome::Integer(1)
    );
    assert_eq!(s.ttl(T + 101, "k"), -1, "a new key, with no time to live");
}

#[test]
fn the_clock_never_goes_back_and_reads_never_run_behind_it() {
    let mut s = Store::new();
    s.at(T + 1_000, set("a", "1"));
    // A new leader whose clock is 500 ms behind: its writes apply at the
    // old clock, so a TTL counts from there.
    s.at(
        T + 500,
        set_with("k", "v", Condition::Always, false, Expiry::In(200)),
    );
    assert_eq!(s.kv.expiries().clock(), T + 1_000);
    assert_eq!(s.kv.expiries().get(b"k"), Some(T + 1_200));
    // A read stamped before the clock is evaluated at the clock.
    assert_eq!(s.ttl(T, "k"), 200);
}

#[test]
fn incr_append_setrange_and_incrbyfloat_keep_the_time_to_live() {
    let mut s = Store::new();
    s.at(
        T,
        set_with("n", "1", Condition::Always, false, Expiry::In(1_000)),
    );
    s.at(T, Command::Incr { key: b("n") });
    s.at(
        T,
        Command::Append {
            key: b("n"),
            value: b("0"),
        },
    );
    s.at(
        T,
        Command::SetRange {
            key: b("n"),
            offset: 0,
            value: b("3"),
        },
    );
    assert_eq!(
        s.at(
            T,
            Command::IncrByFloat {
                key: b("n"),
                by: b("0.5")
            }
        ),
        value("30.5")
    );
    assert_eq!(s.get(T, "n"), Some(b("30.5")));
    assert_eq!(s.ttl(T, "n"), 1_000);
}

#[test]
fn expire_with_its_conditions_as_redis_decides_them() {
    let mut s = Store::new();
    let c = |no_ttl, has_ttl, later, sooner| ExpireCondition {
        no_ttl,
        has_ttl,
        later,
        sooner,
    };
    let none = ExpireCondition::default();
    assert_eq!(
        s.at(T, expire("missing", 10, true, none)),
        Outcome::Integer(0)
    );
    s.at(T, set("k", "v"));
    // XX and GT on a key without a time to live: refused; LT: set.
    assert_eq!(
        s.at(T, expire("k", 10_000, true, c(false, true, false, false))),
        Outcome::Integer(0)
    );
    assert_eq!(
        s.at(T, expire("k", 10_000, true, c(false, false, true, false))),
        Outcome::Integer(0)
    );
    assert_eq!(
        s.at(T, expire("k", 10_000, true, c(false, false, false, true))),
        Outcome::Integer(1)
    );
    assert_eq!(s.ttl(T, "k"), 10_000);
    // NX with a time to live: refused.
    assert_eq!(
        s.at(T, expire("k", 5_000, true, c(true, false, false, false))),
        Outcome::Integer(0)
    );
    // GT: only later; LT: only sooner; XX GT together.
    assert_eq!(
        s.at(T, expire("k", 5_000, true, c(false, false, true, false))),
        Outcome::Integer(0)
    );
    assert_eq!(
        s.at(T, expire("k", 20_000, true, c(false, true, true, false))),
        Outcome::Integer(1)
    );
    assert_eq!(
        s.at(T, expire("k", 20_000, true, c(false, false, false, true))),
        Outcome::Integer(0)
    );
    assert_eq!(s.ttl(T, "k"), 20_000);
    // An absolute deadline.
    let at = (T + 30_000) as i64;
    assert_eq!(s.at(T, expire("k", at, false, none)), Outcome::Integer(1));
    assert_eq!(s.ttl(T, "k"), 30_000);
    // PERSIST, then again: nothing left to remove.
    assert_eq!(
        s.at(T, Command::Persist { key: b("k") }),
        Outcome::Integer(1)
    );
    assert_eq!(
        s.at(T, Command::Persist { key: b("k") }),
        Outcome::Integer(0)
    );
    assert_eq!(s.ttl(T, "k"), -1);
    // A negative TTL, or a deadline passed, deletes the key: 1.
    assert_eq!(s.at(T, expire("k", -1, true, none)), Outcome::Integer(1));
    assert_eq!(s.get(T, "k"), None);
    s.at(T, set("k", "v"));
    assert_eq!(s.at(T, expire("k", 1, false, none)), Outcome::Integer(1));
    assert_eq!(s.kv.len(), 0);
    // EXPIRE 0 deletes too (the deadline is the clock itself).
    s.at(T, set("k", "v"));
    assert_eq!(s.at(T, expire("k", 0, true, none)), Outcome::Integer(1));
    assert_eq!(s.kv.len(), 0);
}

#[test]
fn ttl_expiretime_and_their_rounding() {
    let mut s = Store::new();
    s.at(
        T,
        set_with("k", "v", Condition::Always, false, Expiry::In(1_499)),
    );
    let ttl = |s: &Store, now, millis, absolute| match s.read(
        now,
        Read::Ttl {
            key: b("k"),
            millis,
            absolute,
        },
    ) {
        QueryReply::Integer(n) => n,
        other => panic!("{other:?}"),
    };
    assert_eq!(ttl(&s, T, false, false), 1, "1.499 s rounds to 1");
    s.at(
        T,
        set_with("k", "v", Condition::Always, false, Expiry::In(1_500)),
    );
    assert_eq!(ttl(&s, T, false, false), 2, "1.5 s rounds to 2");
    assert_eq!(
        ttl(&s, T - 2, false, false),
        2,
        "a read is never behind the clock"
    );
    assert_eq!(ttl(&s, T, true, true), (T + 1_500) as i64);
    assert_eq!(ttl(&s, T, false, true), ((T + 1_500 + 500) / 1000) as i64);
}

#[test]
fn rename_copy_getdel_getex_and_msetnx() {
    let mut s = Store::new();
    s.at(
        T,
        set_with("a", "1", Condition::Always, false, Expiry::In(5_000)),
    );
    assert_eq!(
        s.at(
            T,
            Command::Rename {
                from: b("zz"),
                to: b("b"),
                only_if_absent: false
            }
        ),
        Outcome::Refused("no such key".into())
    );
    assert_eq!(
        s.at(
            T,
            Command::Rename {
                from: b("a"),
                to: b("b"),
                only_if_absent: false
            }
        ),
        Outcome::Done
    );
    assert_eq!(
        s.ttl(T, "b"),
        5_000,
        "the time to live moves with the value"
    );
    assert_eq!(s.get(T, "a"), None);
    s.at(T, set("c", "3"));
    assert_eq!(
        s.at(
            T,
            Command::Rename {
                from: b("b"),
                to: b("c"),
                only_if_absent: true
            }
        ),
        Outcome::Integer(0)
    );
    assert_eq!(
        s.at(
            T,
            Command::Rename {
                from: b("b"),
                to: b("b"),
                only_if_absent: false
            }
        ),
        Outcome::Done
    );
    // COPY keeps the source and copies its deadline; REPLACE overwrites.
    assert_eq!(
        s.at(
            T,
            Command::Copy {
                from: b("b"),
                to: b("c"),
                replace: false
            }
        ),
        Outcome::Integer(0)
    );
    assert_eq!(
        s.at(
            T,
            Command::Copy {
                from: b("b"),
                to: b("c"),
                replace: true
            }
        ),
        Outcome::Integer(1)
    );
    assert_eq!((s.get(T, "c"), s.ttl(T, "c")), (Some(b("1")), 5_000));
    assert_eq!(
        s.at(
            T,
            Command::Copy {
                from: b("none"),
                to: b("d"),
                replace: true
            }
        ),
        Outcome::Integer(0)
    );
    // GETEX PERSIST, GETEX with a deadline passed, GETDEL.
    assert_eq!(
        s.at(
            T,
            Command::GetEx {
                key: b("c"),
                expiry: Expiry::Clear
            }
        ),
        value("1")
    );
    assert_eq!(s.ttl(T, "c"), -1);
    assert_eq!(
        s.at(
            T,
            Command::GetEx {
                key: b("c"),
                expiry: Expiry::At(1)
            }
        ),
        value("1")
    );
    assert_eq!(s.get(T, "c"), None);
    assert_eq!(s.at(T, Command::GetDel { key: b("b") }), value("1"));
    assert_eq!(
        s.at(T, Command::GetDel { key: b("b") }),
        Outcome::Value(None)
    );
    // MSETNX: all or nothing.
    let pairs = |list: &[(&str, &str)]| list.iter().map(|(k, v)| (b(k), b(v))).collect();
    assert_eq!(
        s.at(
            T,
            Command::MSet {
                pairs: pairs(&[("x", "1"), ("y", "2")]),
                only_if_none_exist: true
            }
        ),
        Outcome::Integer(1)
    );
    assert_eq!(
        s.at(
            T,
            Command::MSet {
                pairs: pairs(&[("z", "1"), ("y", "3")]),
                only_if_none_exist: true
            }
        ),
        Outcome::Integer(0)
    );
    assert_eq!((s.get(T, "z"), s.get(T, "y")), (None, Some(b("2"))));
    // MSET: the last of a repeated key wins.
    assert_eq!(
        s.at(
            T,
            Command::MSet {
                pairs: pairs(&[("y", "4"), ("y", "5")]),
                only_if_none_exist: false
            }
        ),
        Outcome::Done
    );
    assert_eq!(s.get(T, "y"), Some(b("5")));
}

#[test]
fn setrange_pads_and_stops_at_the_value_limit() {
    let mut s = Store::new();
    let setrange = |offset, v: &str| Command::SetRange {
        key: b("s"),
        offset,
        value: b(v),
    };
    assert_eq!(s.at(T, setrange(10, "")), Outcome::Integer(0));
    assert_eq!(s.kv.len(), 0, "an empty value creates nothing");
    assert_eq!(s.at(T, setrange(3, "ab")), Outcome::Integer(5));
    assert_eq!(s.get(T, "s"), Some(b"\0\0\0ab".to_vec()));
    assert_eq!(s.at(T, setrange(1, "X")), Outcome::Integer(5));
    assert_eq!(s.get(T, "s"), Some(b"\0X\0ab".to_vec()));
    assert_eq!(
        s.at(T, setrange(MAX_VALUE_BYTES as u64, "x")),
        Outcome::Refused(write::TOO_LONG.into())
    );
    assert_eq!(
        s.at(T, setrange(MAX_VALUE_BYTES as u64 + 5, "")),
        Outcome::Integer(5)
    );
}

#[test]
fn active_expiry_deletes_only_what_is_still_due() {
    let mut s = Store::new();
    s.at(
        T,
        set_with("a", "1", Condition::Always, false, Expiry::In(10)),
    );
    s.at(
        T,
        set_with("b", "1", Condition::Always, false, Expiry::In(10)),
    );
    s.at(
        T,
        set_with("c", "1", Condition::Always, false, Expiry::In(1_000)),
    );
    assert_eq!(s.kv.expiries().due(T + 10, 100), vec![b("a"), b("b")]);
    // Between the leader's look and the entry, b was given a new life.
    s.at(T + 10, set("b", "2"));
    let expired = Command::Expired {
        keys: vec![b("a"), b("b"), b("c"), b("none")],
    };
    assert_eq!(s.at(T + 10, expired), Outcome::Deleted(1));
    assert_eq!(
        (s.get(T + 10, "a"), s.get(T + 10, "b")),
        (None, Some(b("2")))
    );
    assert_eq!(s.get(T + 10, "c"), Some(b("1")));
    assert_eq!(s.kv.expiries().len(), 1);
}

#[test]
fn flushall_deletes_every_key_and_keeps_the_sessions() {
    let mut s = Store::new();
    s.at(
        T,
        Command::Session {
            client: 1,
            seq: 1,
            command: Box::new(set_with("a", "1", Condition::Always, false, Expiry::In(10))),
        },
    );
    s.at(T, set("b", "2"));
    assert_eq!(s.at(T, Command::FlushAll), Outcome::Done);
    assert_eq!(
        (s.kv.len(), s.kv.expiries().len(), s.kv.sessions()),
        (0, 0, 1)
    );
    assert_eq!(s.read(T, Read::DbSize), QueryReply::Integer(0));
}

#[test]
fn reads_exists_mget_keys_type_strlen_randomkey() {
    let mut s = Store::new();
    s.at(T, set("a", "hello"));
    s.at(T, set("b", "x"));
    s.at(
        T,
        set_with("gone", "1", Condition::Always, false, Expiry::In(5)),
    );
    let keys = |list: &[&str]| list.iter().map(|k| b(k)).collect::<Vec<_>>();
    let now = T + 5;
    assert_eq!(
        s.read(
            now,
            Read::Exists {
                keys: keys(&["a", "a", "gone", "zz"])
            }
        ),
        QueryReply::Integer(2)
    );
    assert_eq!(
        s.read(
            now,
            Read::MGet {
                keys: keys(&["a", "gone", "b"])
            }
        ),
        QueryReply::Values(vec![Some(b("hello")), None, Some(b("x"))])
    );
    let QueryReply::Keys(mut all) = s.read(now, Read::Keys { pattern: b("*") }) else {
        panic!("KEYS answers keys");
    };
    all.sort();
    assert_eq!(all, keys(&["a", "b"]), "not the expired one");
    assert_eq!(
        s.read(now, Read::Type { key: b("a") }),
        QueryReply::Status("string".into())
    );
    assert_eq!(
        s.read(now, Read::Type { key: b("gone") }),
        QueryReply::Status("none".into())
    );
    assert_eq!(
        s.read(now, Read::StrLen { key: b("a") }),
        QueryReply::Integer(5)
    );
    assert_eq!(
        s.read(now, Read::StrLen { key: b("zz") }),
        QueryReply::Integer(0)
    );
    for seed in 0..50 {
        match s.read(now, Read::RandomKey { seed }) {
            QueryReply::Value(Some(k)) => assert!(k == b("a") || k == b("b"), "{k:?}"),
            other => panic!("RANDOMKEY answered {other:?}"),
        }
    }
    assert_eq!(
        Store::new().read(now, Read::RandomKey { seed: 1 }),
        QueryReply::Value(None)
    );
    // Only expired keys left: none to pick.
    let mut only_expired = Store::new();
    only_expired.at(
        T,
        set_with("x", "1", Condition::Always, false, Expiry::In(5)),
    );
    assert_eq!(
        only_expired.read(now, Read::RandomKey { seed: 3 }),
        QueryReply::Value(None)
    );
}

/// SCAN's guarantee: a key present from the scan's start to its end is
/// returned at least once, whatever is inserted and deleted between the
/// steps, and whatever COUNT is.
#[test]
fn scan_returns_every_key_present_throughout_despite_concurrent_changes() {
    for (count, seed) in [(1u64, 1u64), (7, 2), (100, 3), (1_000, 4)] {
        let mut s = Store::new();
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in 0..2_000 {
            s.at(T, set(&format!("stable:{n}"), "v"));
            s.at(T, set(&format!("churn:{n}"), "v"));
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut steps = 0;
        loop {
            let read = Read::Scan {
                cursor,
                pattern: None,
                count,
                type_name: None,
            };
            let QueryReply::Scan {
                cursor: after,
                keys,
            } = s.read(T, read)
            else {
                panic!("SCAN answers a cursor and keys");
            };
            seen.extend(keys);
            steps += 1;
            // Between the steps: insert new keys, delete churning ones.
            for _ in 0..20 {
                let n = next() % 4_000;
                match next() % 2 {
                    0 => s.at(T, set(&format!("new:{n}"), "v")),
                    _ => s.at(
                        T,
                        Command::Delete {
                            keys: vec![b(&format!("churn:{}", n % 2_000))],
                        },
                    ),
                };
            }
            if after == 0 {
                break;
            }
            cursor = after;
        }
        let missing = (0..2_000)
            .filter(|n| !seen.contains(&b(&format!("stable:{n}"))))
            .count();
        assert_eq!(missing, 0, "COUNT {count}: {missing} stable keys missed");
        assert!(
            steps as u64 >= 4_000 / count.max(1) / 2,
            "COUNT {count}: {steps} steps"
        );
    }
}

#[test]
fn scan_filters_by_pattern_and_type_after_counting() {
    let mut s = Store::new();
    for n in 0..100 {
        s.at(T, set(&format!("user:{n}"), "v"));
        s.at(T, set(&format!("item:{n}"), "v"));
    }
    let scan_all = |pattern: Option<&str>, type_name: Option<&str>| {
        let mut keys = Vec::new();
        let mut cursor = 0;
        loop {
            let read = Read::Scan {
                cursor,
                pattern: pattern.map(b),
                count: 10,
                type_name: type_name.map(b),
            };
            let QueryReply::Scan {
                cursor: after,
                keys: got,
            } = s.read(T, read)
            else {
                panic!("SCAN answers a cursor and keys");
            };
            keys.extend(got);
            if after == 0 {
                return keys;
            }
            cursor = after;
        }
    };
    assert_eq!(scan_all(None, None).len(), 200);
    assert_eq!(scan_all(Some("user:*"), None).len(), 100);
    assert_eq!(scan_all(Some("user:*"), Some("STRING")).len(), 100);
    assert_eq!(scan_all(None, Some("list")).len(), 0);
}

/// Two replicas applying the same entries — one of them restored from a
/// snapshot half way — agree on every outcome and on the digest after every
/// entry, as keys expire by the entries' stamps, whatever the stamps' order.
#[test]
fn replicas_decide_expiry_identically_including_from_a_snapshot() {
    let command = |i: u64| -> (u64, Command) {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        // Stamps mostly rising, sometimes 30 ms behind (a lagging leader).
        let stamp = T + i * 3 - u64::from(x.is_multiple_of(4)) * 30;
        let key = format!("k{}", x % 40);
        let command = match x % 9 {
            0 | 1 => set_with(&key, "v", Condition::Always, false, Expiry::In(x % 50)),
            2 => Command::Incr { key: b(&key) },
            3 => expire(&key, (x % 70) as i64 - 10, true, ExpireCondition::default()),
            4 => Command::Persist { key: b(&key) },
            5 => Command::Expired {
                keys: vec![b(&key), b("k1"), b("k2")],
            },
            6 => Command::Rename {
                from: b(&key),
                to: b("k0"),
                only_if_absent: false,
            },
            7 => Command::GetEx {
                key: b(&key),
                expiry: Expiry::In(x % 20),
            },
            _ => set(&key, "plain"),
        };
        (stamp, command)
    };
    let mut a = Store::new();
    let mut c = Store::new();
    for i in 0..300 {
        let (stamp, cmd) = command(i);
        assert_eq!(a.at(stamp, cmd.clone()), c.at(stamp, cmd), "entry {i}");
    }
    let mut bytes = Vec::new();
    a.kv.snapshot().write_to(&mut bytes).unwrap();
    let mut b_ = Store::new();
    b_.kv.restore(&mut &bytes[..]).unwrap();
    b_.index = a.index;
    assert_eq!(b_.kv.digest(), a.kv.digest());
    assert_eq!(b_.kv.expiries().clock(), a.kv.expiries().clock());
    let mut deleted = 0;
    for i in 300..1_500 {
        let (stamp, cmd) = command(i);
        let (x, y) = (a.at(stamp, cmd.clone()), b_.at(stamp, cmd));
        deleted += matches!(x, Outcome::Deleted(n) if n > 0) as usize;
        assert_eq!(x, y, "entry {i}");
        assert_eq!(a.kv.digest(), b_.kv.digest(), "entry {i}");
        assert_eq!(a.kv.expiries().clock(), b_.kv.expiries().clock());
    }
    assert!(deleted > 10, "active expiry deleted keys {deleted} times");
    assert!(
        !a.kv.expiries().is_empty(),
        "some keys still have deadlines"
    );
}
