//! A differential test: the same requests go to a real `redis-server` (the
//! reference, Debian's 7.0) and to the leader of a 3-node raftnode cluster,
//! once in RESP2, once after `HELLO 3`, and once pipelined (each case's
//! requests in one burst before any reply is read, which is where raftnode
//! keeps reads and writes apart), and every pair of replies must be
//! equal as parsed RESP values, so types count (a bulk `"1"` is not `:1`, a
//! null bulk is not a null array in RESP2) and so do error texts.
//!
//! The cases are data ([`CASES`]): a named list of requests, each written as
//! redis-cli would take it (quotes work: `SET k ""`). Each case runs on a
//! fresh connection to each server after both were emptied, so cases do not
//! depend on each other. A request may carry a normaliser for replies that
//! cannot be equal byte for byte ([`Check`]): TTLs within a tolerance, KEYS
//! as a sorted set, a full SCAN iteration compared as the union of its keys,
//! RANDOMKEY as one of the keys that exist, one SCAN step as accepted or
//! refused, and a wait until an expired key is gone. Times in a request come from placeholders (`{s+100}` is the unix
//! time in seconds 100 s from when the test started, `{ms-5000}` the same in
//! milliseconds), the same text for both servers.
//!
//! Every mismatch is one line (protocol, case, request, both replies) and
//! the count comes last, so the output is a to-do list; the test fails if
//! there is any. Run it with `cargo test --release --test redis_diff --
//! --nocapture` to see them when it passes too (it prints the count).
//!
//! Adding a case is one line in [`CASES`]: `case("name", &[r("SET k v"),
//! secs("TTL k"), ...])`, with [`r`] for an exact comparison and the other
//! constructors ([`secs`], [`millis`], [`sorted`], [`one_of`], [`scan`],
//! [`accepted`], [`until`]) for the normalisers.
//!
//! # Deliberate differences
//!
//! A request marked with [`Step::differs`] must give exactly the reply it
//! names on raftnode, and Redis's reply must still be another one (a
//! difference that disappears is reported, so the mark can go). The current
//! list, with the reasons:
//!
//! - **One database** ([`ONE_DB`]): `COPY src dst DB n` with `n` other than
//!   0 answers `-ERR DB index is out of range` (Redis has 16 databases and
//!   copies); inside `EXEC` that error stands in the command's place.
//! - **Values of at most 1 MiB, keys of at most 64 KiB** ([`SIZES`]):
//!   `SETRANGE` and `APPEND` past 1 MiB answer Redis's own `string exceeds
//!   maximum allowed size (proto-max-bulk-len)`, which Redis gives only past
//!   512 MB; a longer key is refused ([`KEY_TOO_LONG`]).
//! - **At most 4096 keys in one command** ([`MANY`]): `MSET`, `MSETNX`,
//!   `MGET`, `EXISTS`, `TOUCH`, `DEL` and `UNLINK` naming more answer `-ERR
//!   too many arguments (MSET takes at most 4096 keys)`.
//!
//! Not covered, because raftnode has no such thing: other data types (so no
//! `WRONGTYPE`; `TYPE` and `SCAN ... TYPE` only ever meet strings),
//! databases other than 0 beyond `COPY ... DB 1`, and keyspace
//! notifications. `SUBSTR` (GETRANGE's old name) is not part of issue 14.

mod support;

use raftnode::redis::resp::{self, Limits, Reply};
use std::collections::BTreeSet;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::process::ProcCluster;
use support::redis_server::RedisServer;

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

/// How a request's two replies are compared.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Equal as parsed values.
    Exact,
    /// Equal, except that two non-negative integers anywhere in the reply
    /// (TTLs, deadlines) may differ by up to this much: both servers' clocks
    /// move while the case runs. Negative integers (-1 no deadline, -2 no
    /// key) must be equal.
    Near(i64),
    /// An array compared as a sorted list (KEYS).
    Sorted,
    /// A bulk reply that must be one of these (RANDOMKEY); any of them
    /// counts as the same.
    OneOf(&'static [&'static str]),
    /// The request is `SCAN`'s arguments after the cursor: the harness
    /// iterates from cursor 0 until the cursor is 0 again and compares the
    /// sorted set of every key returned (an error stops the iteration and is
    /// the reply).
    Scan,
    /// The same error on both, or no error on both: for requests whose
    /// answers may rightly differ, such as one SCAN step (cursors differ).
    Accepted,
    /// Repeats the request (up to [`EXPIRY_WAIT`]) until the reply, shown as
    /// [`show`] shows it, is this; then compares as `Exact`.
    Until(&'static str),
}

/// One request of a case.
#[derive(Debug, Clone, Copy)]
struct Step {
    request: &'static str,
    check: Check,
    /// A deliberate difference: raftnode's reply as [`show`] shows it, and
    /// why it differs.
    differs: Option<(&'static str, &'static str)>,
}

impl Step {
    /// Marks a deliberate difference: raftnode must answer `ours` (as
    /// [`show`] shows it), for `reason`.
    const fn differs(self, ours: &'static str, reason: &'static str) -> Step {
        Step {
            differs: Some((ours, reason)),
            ..self
        }
    }
}

const fn step(request: &'static str, check: Check) -> Step {
    Step {
        request,
        check,
        differs: None,
    }
}

/// A request whose replies must be equal.
const fn r(request: &'static str) -> Step {
    step(request, Check::Exact)
}

/// TTL, EXPIRETIME and the like, in seconds: within 2 s.
const fn secs(request: &'static str) -> Step {
    step(request, Check::Near(2))
}

/// PTTL, PEXPIRETIME and the like, in milliseconds: within 2000 ms.
const fn millis(request: &'static str) -> Step {
    step(request, Check::Near(2000))
}

const fn accepted(request: &'static str) -> Step {
    step(request, Check::Accepted)
}

const fn sorted(request: &'static str) -> Step {
    step(request, Check::Sorted)
}

const fn one_of(request: &'static str, keys: &'static [&'static str]) -> Step {
    step(request, Check::OneOf(keys))
}

/// A full SCAN: `args` are what follows the cursor.
const fn scan(args: &'static str) -> Step {
    step(args, Check::Scan)
}

const fn until(request: &'static str, reply: &'static str) -> Step {
    step(request, Check::Until(reply))
}

struct Case {
    name: &'static str,
    steps: &'static [Step],
}

const fn case(name: &'static str, steps: &'static [Step]) -> Case {
    Case { name, steps }
}

/// How long an expiry poll may wait for a key to be gone on both servers.
const EXPIRY_WAIT: Duration = Duration::from_secs(3);

#[rustfmt::skip]
/// Why raftnode has no databases but 0 (README, "Differences from Redis").
const ONE_DB: &str = "one database: the store is one replicated keyspace";
/// Why raftnode caps a value at 1 MiB (README, "Differences from Redis").
const SIZES: &str =
    "a value is at most 1 MiB and a key 64 KiB: each is in log entries and snapshots";
/// Why raftnode caps the keys one command names (README, "Differences from
/// Redis").
const MANY: &str =
    "at most 4096 keys in one command: it is one log entry, and one reply held by the leader";
/// What raftnode answers a key over 64 KiB.
const KEY_TOO_LONG: &str = "-ERR key of 65537 bytes is over the 65536-byte limit";
/// Redis's own error, which raftnode gives at its smaller limit.
const TOO_BIG: &str = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)";

#[rustfmt::skip]
const CASES: &[Case] = &[
    // --- the old commands -------------------------------------------------
    case("get set del", &[
        r("GET k"), r("SET k v"), r("GET k"), r("SET k \"\""), r("GET k"),
        r("DEL k missing k"), r("GET"), r("SET k"), r("DEL"), r("GET k extra"),
    ]),
    case("incr append", &[
        r("INCR n"), r("INCR n"), r("APPEND n 0"), r("INCR n"), r("APPEND s abc"),
        r("APPEND s \"\""), r("GET s"), r("INCR s"), r("SET big 9223372036854775807"),
        r("INCR big"), r("SET sp \" 1\""), r("INCR sp"), r("SET z 007"), r("INCR z"),
        r("APPEND"), r("INCR"),
    ]),
    // Every command with too few and too many arguments, on an empty store.
    case("arity", &[
        r("GET"), r("GET a a"), r("SETNX a"), r("SETNX a a a"), r("GETSET a"), r("GETSET a a a"),
        r("GETDEL"), r("GETDEL a a"), r("STRLEN"), r("STRLEN a a"), r("GETRANGE a a"),
        r("GETRANGE a a a a"), r("SETRANGE a a"), r("SETRANGE a a a a"), r("INCR"), r("INCR a a"),
        r("DECR"), r("DECR a a"), r("INCRBY a"), r("INCRBY a a a"), r("DECRBY a"),
        r("DECRBY a a a"), r("INCRBYFLOAT a"), r("INCRBYFLOAT a a a"), r("APPEND a"),
        r("APPEND a a a"), r("DBSIZE a"), r("KEYS"), r("KEYS a a"), r("TYPE"), r("TYPE a a"),
        r("RENAME a"), r("RENAME a a a"), r("RENAMENX a"), r("RENAMENX a a a"), r("RANDOMKEY a"),
        r("TTL"), r("TTL a a"), r("PTTL"), r("PTTL a a"), r("EXPIRETIME"), r("EXPIRETIME a a"),
        r("PEXPIRETIME"), r("PEXPIRETIME a a"), r("PERSIST"), r("PERSIST a a"), r("SET"), r("MGET"),
        r("MSET"), r("MSETNX"), r("GETEX"), r("DEL"), r("EXISTS"), r("SCAN"), r("UNLINK"),
        r("COPY"), r("TOUCH"), r("EXPIRE"), r("PEXPIRE"), r("EXPIREAT"), r("PEXPIREAT"),
        r("FLUSHALL a b"), r("FLUSHDB a b"), r("SET a"), r("COPY a"), r("EXPIRE a"),
        r("PEXPIREAT a"),
    ]),
    // --- SET and its options -----------------------------------------------
    case("set nx xx", &[
        r("SET k v XX"), r("GET k"), r("SET k v NX"), r("SET k w NX"), r("GET k"),
        r("SET k w XX"), r("GET k"), r("SET k v nx"), r("SET k v NX XX"), r("SET k v XX NX"),
        r("SET k v NX NX"), r("SET k v FOO"), r("SET k v EX"),
    ]),
    case("set get", &[
        r("SET k v GET"), r("GET k"), r("SET k w GET"), r("SET k x GET GET"),
        r("SET k y NX GET"), r("GET k"), r("SET new y NX GET"), r("GET new"),
        r("SET k z XX GET"), r("SET missing z XX GET"), r("EXISTS missing"),
    ]),
    case("set ex px", &[
        r("SET k v EX 100"), secs("TTL k"), millis("PTTL k"), r("SET k v PX 100000"),
        secs("TTL k"), r("SET k v ex 10"), secs("TTL k"), r("SET k v EX 0"), r("SET k v EX -1"),
        r("SET k v EX abc"), r("SET k v EX 1.5"), r("SET k v PX 0"), r("SET k v PX -5"),
        r("SET k v PX 9223372036854775807"), r("SET k v EX 9223372036854775807"),
        r("SET k v EX 9223372036854775"), r("SET k v EX 9223372036854776"),
        r("SET k v PX 9223372036854775808"), r("SET k v EX 10 PX 10"), r("SET k v EX 10 EX 10"),
        r("SET k v EX 10 KEEPTTL"), r("SET k v KEEPTTL EX 10"), r("SET k v PX 10 EXAT 10"),
        secs("TTL k"), r("GET k"),
    ]),
    case("set exat pxat", &[
        r("SET k v EXAT {s+100}"), secs("TTL k"), secs("EXPIRETIME k"),
        r("SET k v PXAT {ms+100000}"), millis("PTTL k"), millis("PEXPIRETIME k"),
        r("SET k v EXAT {s-10}"), r("GET k"), r("EXISTS k"), r("SET k v PXAT {ms-10}"),
        r("GET k"), r("SET k v EXAT 0"), r("SET k v PXAT -1"), r("SET k v EXAT abc"),
        r("SET k v EXAT 1 PXAT 1"), r("SET k v PXAT 9223372036854775807"), r("DBSIZE"),
    ]),
    case("set clears or keeps a ttl", &[
        r("SET k v EX 100"), r("SET k w"), secs("TTL k"), r("SET k v EX 100"),
        r("SET k w KEEPTTL"), secs("TTL k"), r("GET k"), r("SET k x KEEPTTL GET"),
        secs("TTL k"), r("SET fresh v KEEPTTL"), secs("TTL fresh"), r("SET k y XX KEEPTTL"),
        secs("TTL k"), r("SET k z GET EX 50"), secs("TTL k"),
    ]),
    // --- other string commands --------------------------------------------
    case("mget mset msetnx", &[
        r("MSET a 1 b 2"), r("MGET a b c a"), r("MSET a 1 b"), r("MSET"), r("MSET a"),
        r("MGET"), r("MSET a x a y"), r("GET a"), r("MSETNX c 3 d 4"), r("MGET c d"),
        r("MSETNX d 5 e 6"), r("MGET d e"), r("EXISTS e"), r("MSETNX f 1 f 2"), r("GET f"),
        r("MSETNX g"), r("MSETNX g 1 h"), r("SET t v EX 100"), r("MSET t w"), secs("TTL t"),
    ]),
    case("setnx getset getdel", &[
        r("SETNX k v"), r("SETNX k w"), r("GET k"), r("SETNX k"), r("GETSET k x"),
        r("GETSET missing y"), r("GET missing"), r("GETSET k"), r("SET t v EX 100"),
        r("GETSET t w"), secs("TTL t"), r("GETDEL k"), r("GETDEL k"), r("EXISTS k"),
        r("GETDEL"), r("GETDEL a b"),
    ]),
    case("getex", &[
        r("GETEX missing"), r("GETEX missing EX 10"), r("SET k v"), r("GETEX k"), secs("TTL k"),
        r("GETEX k EX 100"), secs("TTL k"), r("GETEX k PX 50000"), millis("PTTL k"),
        r("GETEX k EXAT {s+200}"), secs("TTL k"), r("GETEX k PXAT {ms+300000}"), secs("TTL k"),
        r("GETEX k PERSIST"), secs("TTL k"), r("GETEX k EX 0"), r("GETEX k EX -1"),
        r("GETEX k EX abc"), r("GETEX k PX 9223372036854775807"), r("GETEX k EX 10 PX 10"),
        r("GETEX k PERSIST EX 10"), r("GETEX k KEEPTTL"), r("GETEX k FOO"), r("GETEX k EX"),
        r("GETEX"), r("GETEX k EXAT {s-1}"), r("GET k"), r("EXISTS k"),
    ]),
    case("strlen getrange", &[
        r("STRLEN missing"), r("SET k \"Hello World\""), r("STRLEN k"), r("GETRANGE k 0 4"),
        r("GETRANGE k -5 -1"), r("GETRANGE k 0 -1"), r("GETRANGE k 0 100"), r("GETRANGE k 5 3"),
        r("GETRANGE k -100 2"), r("GETRANGE k -100 -50"), r("GETRANGE k 100 200"),
        r("GETRANGE k -1 -5"), r("GETRANGE k 3 -100"), r("GETRANGE missing 0 -1"),
        r("GETRANGE k a 1"), r("GETRANGE k 0"), r("STRLEN"), r("SET e \"\""),
        r("GETRANGE e 0 -1"), r("GETRANGE e -1 0"), r("STRLEN e"),
        r("GETRANGE k 0 9223372036854775807"), r("GETRANGE k -9223372036854775808 0"),
    ]),
    case("setrange", &[
        r("SET k \"Hello World\""), r("SETRANGE k 6 Redis"), r("GET k"), r("SETRANGE k 20 !"),
        r("GET k"), r("STRLEN k"), r("SETRANGE new 3 abc"), r("GET new"),
        r("SETRANGE empty 5 \"\""), r("EXISTS empty"), r("SETRANGE empty 0 \"\""),
        r("EXISTS empty"), r("SETRANGE k 0 \"\""), r("SETRANGE k -1 x"), r("SETRANGE k a x"),
        r("SETRANGE k 536870912 x"), r("SETRANGE k 536870911 \"\""), r("SETRANGE k 0"),
        r("SET t v EX 100"), r("SETRANGE t 1 x"), secs("TTL t"), r("GET t"),
        r("SETRANGE k 1048575 x"), r("STRLEN k"), r("APPEND k y").differs(TOO_BIG, SIZES),
        r("SETRANGE k 1048576 x").differs(TOO_BIG, SIZES),
        r("STRLEN k").differs(":1048576", SIZES),
    ]),
    case("incr decr incrby decrby", &[
        r("DECR n"), r("DECR n"), r("INCRBY n 10"), r("DECRBY n 3"), r("INCRBY n -20"),
        r("DECRBY n -5"), r("INCRBY n abc"), r("INCRBY n 1.5"), r("INCRBY n \"\""),
        r("INCRBY n 9223372036854775808"), r("SET m 9223372036854775807"), r("INCRBY m 1"),
        r("INCR m"), r("DECRBY m -1"), r("SET m -9223372036854775808"), r("DECR m"),
        r("DECRBY m 1"), r("INCRBY m -1"), r("SET z 0"),
        r("DECRBY z -9223372036854775808"), r("DECRBY z 9223372036854775807"),
        r("SET s x"), r("INCRBY s 1"), r("DECR s"), r("DECRBY s 1"), r("INCRBY n"),
        r("DECRBY"), r("DECR a b"), r("SET t 5 EX 100"), r("INCR t"), secs("TTL t"),
        r("DECRBY t 2"), secs("TTL t"), r("GET t"), r("SET sp \"1 \""), r("INCRBY sp 1"),
        r("SET plus +1"), r("INCR plus"), r("SET neg0 -0"), r("INCR neg0"),
    ]),
    case("incrbyfloat", &[
        r("INCRBYFLOAT f 1.5"), r("INCRBYFLOAT f 1.5"), r("SET i 10"), r("INCRBYFLOAT i 1"),
        r("INCRBYFLOAT i -11"), r("GET i"), r("SET a 10.50"), r("INCRBYFLOAT a 0.1"),
        r("SET b 5.0e3"), r("INCRBYFLOAT b 2.0e2"), r("SET c 0.1"), r("INCRBYFLOAT c 0.2"),
        r("SET d 1e20"), r("INCRBYFLOAT d 0.1"), r("SET e 3.0"), r("INCRBYFLOAT e 0"),
        r("GET e"), r("INCRBYFLOAT e abc"), r("INCRBYFLOAT e inf"), r("INCRBYFLOAT e -inf"),
        r("INCRBYFLOAT e nan"), r("INCRBYFLOAT e \"\""), r("INCRBYFLOAT e \" 1\""),
        r("INCRBYFLOAT e 1e"), r("INCRBYFLOAT e 0x10"), r("SET s hello"),
        r("INCRBYFLOAT s 1"), r("SET g 1.7976931348623157e308"), r("INCRBYFLOAT g 1e308"),
        r("GET g"), r("SET h 1"), r("INCRBYFLOAT h 1e-10"), r("INCRBYFLOAT h -1"),
        r("SET j 100"), r("INCRBYFLOAT j 1e17"), r("INCRBYFLOAT j -1e17"), r("SET k 1.0"),
        r("INCRBYFLOAT k 1.0"), r("SET m -0.0"), r("INCRBYFLOAT m 0"), r("SET t 1 EX 100"),
        r("INCRBYFLOAT t 0.5"), secs("TTL t"), r("INCRBYFLOAT t"), r("INCRBYFLOAT"),
        r("SET n 0.1"), r("INCRBYFLOAT n 1e-17"), r("INCRBYFLOAT x 3.14159265358979323846"),
        r("INCRBYFLOAT y 1.23456789012345678"), r("INCRBYFLOAT w 123456789012345678"),
    ]),
    case("incrbyfloat parsing and extremes", &[
        r("INCRBYFLOAT a 1e-20"), r("INCRBYFLOAT b 1e-310"), r("INCRBYFLOAT c -1.5"),
        r("INCRBYFLOAT d .5"), r("INCRBYFLOAT e 5."), r("INCRBYFLOAT f 1E2"),
        r("INCRBYFLOAT g 1e+2"), r("INCRBYFLOAT h \"  1\""), r("INCRBYFLOAT i \"1 \""),
        r("INCRBYFLOAT j 0x1p3"), r("INCRBYFLOAT k infinity"), r("INCRBYFLOAT l 1e5000"),
        r("SET m 1e5000"), r("INCRBYFLOAT m 1"), r("SET n 1e4000"), r("INCRBYFLOAT n 1"),
        r("SET o 1e4931"), r("INCRBYFLOAT o 1"), r("SET p 1.5"), r("INCRBYFLOAT p -1.5"),
        r("GET p"), r("SET q -0"), r("INCRBYFLOAT q -0"), r("INCRBYFLOAT r 0.1"),
        r("INCRBYFLOAT r 0.1"), r("INCRBYFLOAT r 0.1"), r("INCRBYFLOAT s 1.1e-5"),
        r("INCRBYFLOAT t 123.456e-3"), r("INCRBYFLOAT u 9007199254740993"),
        r("INCRBYFLOAT v 18446744073709551616"), r("INCRBYFLOAT w -1e-17"),
        r("INCRBYFLOAT x 1.00000000000000000001"), r("SET y 1.5e"), r("INCRBYFLOAT y 1"),
    ]),
    // --- keys -----------------------------------------------------------------
    case("exists touch type dbsize", &[
        r("EXISTS k"), r("DBSIZE"), r("MSET k 1 j 2"), r("EXISTS k"), r("EXISTS k k k"),
        r("EXISTS k j missing"), r("EXISTS"), r("TOUCH k j missing k"), r("TOUCH"),
        r("TYPE k"), r("TYPE missing"), r("TYPE"), r("TYPE k j"), r("DBSIZE"),
        r("DBSIZE x"),
    ]),
    case("keys patterns", &[
        r("MSET hello 1 hallo 2 hxllo 3 hllo 4 heeeello 5 hillo 6 \"h*llo\" 7 \"h?llo\" 8 a 9"),
        r("MSET \"[x]\" 10 \"a\\\\b\" 11 x-y 12 \"\" 13 \"\\xc3\\xa9\" 14 x-c-y 15"),
        sorted("KEYS *"), sorted("KEYS h?llo"), sorted("KEYS h*llo"), sorted("KEYS h[ae]llo"),
        sorted("KEYS h[^e]llo"), sorted("KEYS h[a-b]llo"), sorted("KEYS h[b-a]llo"),
        sorted("KEYS h[!e]llo"), sorted("KEYS h\\*llo"), sorted("KEYS h\\?llo"),
        sorted("KEYS \\[x\\]"), sorted("KEYS [[]x]"), sorted("KEYS h[ae"), sorted("KEYS a\\"),
        sorted("KEYS \"a\\\\\\\\b\""), sorted("KEYS *llo*"), sorted("KEYS **"),
        sorted("KEYS x[-]y"), sorted("KEYS x[a-]y"), sorted("KEYS nothing*"), sorted("KEYS \"\""),
        sorted("KEYS H*"), sorted("KEYS h[\\]]llo"), sorted("KEYS ?"), sorted("KEYS ??"), scan("MATCH *"), scan("MATCH **"), scan("MATCH \"\""),
        sorted("KEYS x[a-c-e]y"), sorted("KEYS x[]y"), sorted("KEYS x[^]y"), sorted("KEYS ["),
        sorted("KEYS *[-]*"), sorted("KEYS *a*b*"), sorted("KEYS h*l*l*o"), sorted("KEYS \\h*"), r("KEYS"),
        r("KEYS a b"),
    ]),
    case("scan", &[
        r("MSET k1 1 k2 2 k3 3 k4 4 k5 5 k6 6 k7 7 k8 8 k9 9 k10 10 j1 1 j2 2 other 3"),
        scan(""), scan("COUNT 1"), scan("COUNT 2"), scan("COUNT 1000"), scan("MATCH k*"),
        scan("MATCH k? COUNT 3"), scan("MATCH *1* COUNT 1"), scan("MATCH nothing*"),
        scan("TYPE string"), scan("TYPE STRING COUNT 4"), scan("TYPE list"),
        scan("TYPE nosuchtype"), scan("MATCH j* TYPE string COUNT 2"), scan("COUNT 0"),
        scan("COUNT -1"), scan("COUNT abc"), scan("MATCH"), scan("FOO bar"), scan("COUNT"),
        scan("MATCH a MATCH k1"), r("SCAN"), r("SCAN abc"), accepted("SCAN -1"), accepted("SCAN +0"), r("SCAN \" 0\""),
        r("SCAN 1.5"), accepted("SCAN 18446744073709551615"), accepted("SCAN 12345"), accepted("SCAN \"\""), accepted("SCAN -0"),
        accepted("SCAN +"), accepted("SCAN -"), accepted("SCAN 0x1"), accepted("SCAN \"0 \""),
        accepted("SCAN -18446744073709551615"), accepted("SCAN -18446744073709551616"),
        accepted("SCAN 99999999999999999999"), accepted("SCAN +-1"), r("SCAN 18446744073709551616"),
    ]),
    case("rename renamenx", &[
        r("RENAME missing k"), r("RENAMENX missing k"), r("SET a 1"), r("RENAME a b"),
        r("GET a"), r("GET b"), r("RENAME b b"), r("GET b"), r("RENAMENX b b"), r("SET c 3"),
        r("RENAMENX b c"), r("GET c"), r("RENAMENX b d"), r("GET d"), r("RENAME d c"),
        r("GET c"), r("SET t v EX 100"), r("RENAME t u"), secs("TTL u"), r("SET w x"),
        r("SET v y EX 100"), r("RENAME w v"), secs("TTL v"), r("RENAMENX u n"), secs("TTL n"),
        r("RENAME a"), r("RENAMENX a"), r("RENAME a b c"), r("DBSIZE"),
    ]),
    case("unlink del", &[
        r("MSET a 1 b 2 c 3"), r("UNLINK a b missing a"), r("EXISTS a b c"), r("UNLINK"),
        r("DEL c c"), r("DBSIZE"),
    ]),
    case("copy", &[
        r("COPY missing b"), r("SET a 1"), r("COPY a b"), r("GET b"), r("COPY a b"),
        r("SET a 2"), r("COPY a b REPLACE"), r("GET b"), r("COPY a a"), r("COPY a a REPLACE"),
        r("COPY a b replace"), r("COPY a b FOO"), r("COPY a"), r("SET t v EX 100"),
        r("COPY t u"), secs("TTL u"), r("COPY a t REPLACE"), secs("TTL t"), r("COPY a c DB 0"),
        r("GET c"), r("COPY a d DB 1").differs("-ERR DB index is out of range", ONE_DB), r("COPY a d DB abc"), r("COPY a d DB -1"),
        r("COPY a d DB"), r("DBSIZE"),
    ]),
    case("randomkey", &[
        r("RANDOMKEY"), r("SET a 1"), r("RANDOMKEY"), r("SET b 2"),
        one_of("RANDOMKEY", &["a", "b"]), one_of("RANDOMKEY", &["a", "b"]), r("RANDOMKEY x"),
        r("SET t v PX 1"), until("EXISTS t", ":0"), one_of("RANDOMKEY", &["a", "b"]),
    ]),
    case("flushall flushdb", &[
        r("MSET a 1 b 2"), r("FLUSHALL"), r("DBSIZE"), r("MSET a 1 b 2"), r("FLUSHDB"),
        r("DBSIZE"), r("SET a 1"), r("FLUSHALL ASYNC"), r("DBSIZE"), r("SET a 1"),
        r("FLUSHALL SYNC"), r("DBSIZE"), r("SET a 1"), r("FLUSHDB async"), r("DBSIZE"),
        r("SET a 1"), r("FLUSHDB SYNC"), r("EXISTS a"), r("FLUSHALL FOO"), r("FLUSHDB FOO"),
        r("FLUSHALL SYNC ASYNC"), r("FLUSHDB ASYNC SYNC"), r("SET t v EX 100"), r("FLUSHALL"),
        secs("TTL t"),
    ]),
    // --- expiry -----------------------------------------------------------------
    case("expire ttl", &[
        secs("TTL missing"), millis("PTTL missing"), r("EXPIRE missing 100"), r("SET k v"),
        secs("TTL k"), millis("PTTL k"), r("EXPIRE k 100"), secs("TTL k"), millis("PTTL k"),
        r("EXPIRE k abc"), r("EXPIRE k 1.5"), r("EXPIRE k"), r("EXPIRE"), r("TTL"),
        r("TTL k j"), r("PTTL"), r("EXPIRE k 100 FOO"), r("EXPIRE k -1"), r("EXISTS k"),
        r("SET k v"), r("EXPIRE k 0"), r("GET k"), r("SET k v"), r("PEXPIRE k 100000"),
        secs("TTL k"), millis("PTTL k"), r("PEXPIRE k -1"), r("EXISTS k"), r("DBSIZE"),
    ]),
    case("expire overflow", &[
        r("SET k v"), r("EXPIRE k 9223372036854775807"), r("EXPIRE k 9223372036854775"),
        r("EXPIRE k 9223372036854776"), r("EXPIRE k -9223372036854775808"), r("GET k"),
        r("SET k v"), r("PEXPIRE k 9223372036854775807"), r("PEXPIRE k 9223372036854775000"),
        r("PEXPIRE k -9223372036854775808"), r("SET k v"), r("EXPIRE missing 9223372036854775807"),
        r("EXPIREAT k 9223372036854775807"), r("PEXPIREAT k 9223372036854775807"),
        r("EXPIREAT k 9223372036854775"), r("PEXPIREAT k 9223372036854775806"),
        r("EXPIRE k 99999999999"), secs("TTL k"), r("PERSIST k"), r("PEXPIRE k 99999999999999"),
        millis("PTTL k"), r("EXPIRE k 9223372036854775808"),
    ]),
    case("expire nx xx gt lt", &[
        r("SET k v"), r("EXPIRE k 100 XX"), secs("TTL k"), r("EXPIRE k 100 GT"), secs("TTL k"),
        r("EXPIRE k 100 LT"), secs("TTL k"), r("EXPIRE k 200 NX"), secs("TTL k"),
        r("EXPIRE k 300 NX"), secs("TTL k"), r("EXPIRE k 400 XX"), secs("TTL k"),
        r("EXPIRE k 300 GT"), secs("TTL k"), r("EXPIRE k 500 GT"), secs("TTL k"),
        r("EXPIRE k 600 LT"), secs("TTL k"), r("EXPIRE k 50 LT"), secs("TTL k"),
        r("EXPIRE k 50 nx"), r("EXPIRE k 100 NX XX"), r("EXPIRE k 100 XX NX"),
        r("EXPIRE k 100 GT LT"), r("EXPIRE k 100 NX GT"), r("EXPIRE k 100 NX LT"),
        r("EXPIRE k 100 XX GT"), secs("TTL k"), r("EXPIRE k 100 XX LT"), secs("TTL k"),
        r("EXPIRE k 1000 GT GT"), r("EXPIRE k 100 FOO"), r("EXPIRE missing 100 XX"),
        r("EXPIRE missing 100 NX"), r("SET p v"), r("PEXPIRE p 100000 GT"), millis("PTTL p"),
        r("PEXPIRE p 100000 LT"), millis("PTTL p"), r("EXPIREAT p {s+500} GT"), secs("TTL p"),
        r("EXPIREAT p {s+300} LT"), secs("TTL p"), r("PEXPIREAT p {ms+200000} XX"),
        secs("TTL p"), r("PEXPIREAT p {ms+100000} NX"), r("EXPIRE p -1 GT"), r("EXISTS p"),
        r("EXPIRE p -1 LT"), r("EXISTS p"), r("SET q v"), r("EXPIRE q -1 GT"), r("EXISTS q"),
        r("EXPIRE q 0 NX"), r("EXISTS q"),
    ]),
    case("expireat pexpireat expiretime", &[
        r("SET k v"), secs("EXPIRETIME k"), millis("PEXPIRETIME k"), secs("EXPIRETIME missing"),
        millis("PEXPIRETIME missing"), r("EXPIREAT k {s+100}"), secs("TTL k"),
        secs("EXPIRETIME k"), millis("PEXPIRETIME k"), r("PEXPIREAT k {ms+50000}"),
        millis("PTTL k"), millis("PEXPIRETIME k"), r("EXPIREAT k {s-10}"), r("EXISTS k"),
        r("SET k v"), r("PEXPIREAT k {ms-1}"), r("GET k"), r("SET k v"), r("EXPIREAT k 0"),
        r("EXISTS k"), r("SET k v"), r("EXPIREAT k -5"), r("EXISTS k"), r("EXPIREAT k abc"),
        r("EXPIREAT missing {s+100}"), r("EXPIREAT"), r("EXPIREAT k"), r("EXPIRETIME"),
        r("PEXPIRETIME a b"),
    ]),
    case("persist", &[
        r("PERSIST missing"), r("SET k v"), r("PERSIST k"), r("EXPIRE k 100"), r("PERSIST k"),
        secs("TTL k"), r("PERSIST k"), r("PERSIST"), r("PERSIST k j"), r("GET k"),
    ]),
    case("a key expires on its own", &[
        r("SET k v PX 50"), r("SET keep v"), r("SET other v PX 100000"),
        until("GET k", "nil"), until("EXISTS k", ":0"), until("DBSIZE", ":2"), secs("TTL k"),
        millis("PTTL k"), r("STRLEN k"), r("APPEND k x"), secs("TTL k"), r("MSET a 1 b 2"),
        r("PEXPIRE a 30"), r("SET b v PX 30"), until("MGET a b keep", "[nil, nil, \"v\"]"),
        until("DBSIZE", ":3"), sorted("KEYS *"), scan(""), r("SET c 1 PX 20"),
        until("INCR c", ":1"), secs("TTL c"),
    ]),
    case("expired keys count as missing", &[
        r("SET e v PX 1"), r("SET f v PX 1"), r("SET keep v"), until("EXISTS e f", ":0"),
        r("TYPE e"), r("TOUCH e f keep"), r("EXPIRE e 100"), r("PERSIST e"), r("GETDEL e"),
        r("GETEX e PERSIST"), r("SETNX e 1"), r("GET e"), secs("TTL e"), r("SET g v PX 1"),
        until("EXISTS g", ":0"), r("MSETNX g 1 h 2"), r("MGET g h"), r("SET i v PX 1"),
        until("EXISTS i", ":0"), r("RENAMENX keep i"), r("GET i"), r("RENAME i keep"),
        r("SET j v PX 1"), until("EXISTS j", ":0"), r("COPY j k"), r("SET j2 v PX 1"),
        until("EXISTS j2", ":0"), r("COPY keep j2"), r("GETRANGE j 0 -1"), r("STRLEN j"),
        r("SET l 5 PX 1"), until("EXISTS l", ":0"), r("INCRBYFLOAT l 1.5"), r("SETRANGE m 0 \"\""),
        r("FLUSHALL"), r("SET z v PX 1"), until("EXISTS z", ":0"), r("RANDOMKEY"),
        until("DBSIZE", ":0"), sorted("KEYS *"), scan(""),
    ]),
    case("writes that keep or clear a ttl", &[
        r("SET k v EX 100"), r("APPEND k x"), secs("TTL k"), r("SETRANGE k 0 y"), secs("TTL k"),
        r("INCRBYFLOAT f 1"), r("EXPIRE f 100"), r("INCRBYFLOAT f 1"), secs("TTL f"),
        r("DECRBY f 1"), secs("TTL f"), r("GETEX k"), secs("TTL k"), r("GETSET k z"),
        secs("TTL k"), r("EXPIRE k 100"), r("MSET k 1"), secs("TTL k"), r("EXPIRE k 100"),
        r("SETNX k 2"), secs("TTL k"), r("PERSIST k"), secs("EXPIRETIME k"),
        millis("PEXPIRETIME k"), r("EXPIRE k 100"), r("GETDEL k"), secs("TTL k"),
        r("SET k v"), secs("TTL k"),
    ]),
    case("integer arguments", &[
        r("SET k v"), r("EXPIRE k +100"), r("EXPIRE k \" 100\""), r("EXPIRE k 0100"),
        r("EXPIRE k \"100 \""), r("EXPIRE k \"\""), r("EXPIRE k 1e2"), secs("TTL k"),
        r("SET n 5"), r("INCRBY n \" 1\""), r("INCRBY n 01"), r("INCRBY n 0x10"),
        r("INCRBY n -0"), r("DECRBY n -0"), r("GETRANGE k 00 01"), r("GETRANGE k +0 1"),
        r("SETRANGE k +1 x"), r("SETRANGE k 01 x"), r("SET k v EX 010"), r("SET k v EX +10"),
        r("SET k v PX \" 10\""), secs("TTL k"), r("GET k"),
    ]),
    case("options in lower case", &[
        r("set k v px 100000 nx"), millis("pttl k"), r("set k w xx keepttl get"), millis("pttl k"),
        r("expire k 10 gt"), r("expire k 10 lt"), secs("ttl k"), r("getex k persist"),
        r("set k v exat {s+100}"), secs("expiretime k"), r("copy k j replace"), scan("match * count 5 type STRING"),
        r("flushall async"), r("dbsize"),
    ]),
    case("exact ttl rounding", &[
        r("SET k v"), r("PEXPIRE k 100900"), r("TTL k"), r("PEXPIRE k 100400"), r("TTL k"),
        r("PEXPIREAT k 4102444800600"), r("EXPIRETIME k"), r("PEXPIRETIME k"),
        r("PEXPIREAT k 4102444800400"), r("EXPIRETIME k"), r("EXPIREAT k 4102444800"),
        r("EXPIREAT k 4102444800 GT"), r("EXPIREAT k 4102444800 LT"), r("EXPIREAT k 4102444800 NX"),
        r("EXPIREAT k 4102444800 XX"), r("PEXPIREAT k 4102444800001 GT"), r("PEXPIRETIME k"),
        r("PEXPIREAT k 4102444800000 LT"), r("PEXPIRETIME k"), r("GETEX k PXAT 4102444800999"),
        r("EXPIRETIME k"), r("SET k v PXAT 4102444800499"), r("EXPIRETIME k"),
        r("SET j v EXAT 4102444800 GET"), r("PEXPIRETIME j"), r("COPY j i"), r("PEXPIRETIME i"),
        r("RENAME i h"), r("PEXPIRETIME h"), r("SET k v PX 100"), r("TTL k"),
    ]),
    case("binary and long values", &[
        r("SET k \"\\x00\\xff\\r\\n\""), r("GET k"), r("STRLEN k"), r("APPEND k \"\\x00\""),
        r("GETRANGE k 1 2"), r("SETRANGE k 1 \"\\x00\""), r("GET k"), r("MGET k k"),
        r("SET n 99999999999999999999"), r("INCR n"), r("INCRBYFLOAT n 1"),
        r("SET {rep:x:65536} v"), r("STRLEN {rep:x:65536}"), r("SET v {rep:ab:100000}"),
        r("GETRANGE v 199990 -1"), r("SETRANGE v 199999 xyz"), r("STRLEN v"), r("DBSIZE"),
        r("SET {rep:x:65537} v").differs(KEY_TOO_LONG, SIZES),
    ]),
    case("many keys in one command", &[
        r("MSET {seq:k:8192}"), r("DBSIZE"), r("EXISTS {seq:k:4096}"), r("TOUCH {seq:k:4096}"),
        r("MSETNX {seq:k:8192}"), r("DEL {seq:k:4096}"), r("DBSIZE"), r("MSET {seq:j:100}"),
        r("MSET {seq:k:8194}").differs("-ERR too many arguments (MSET takes at most 4096 keys)", MANY),
        r("MGET {seq:k:4097}").differs("-ERR too many arguments (MGET takes at most 4096 keys)", MANY),
        r("EXISTS {seq:k:4097}").differs("-ERR too many arguments (EXISTS takes at most 4096 keys)", MANY),
        r("TOUCH {seq:k:4097}").differs("-ERR too many arguments (TOUCH takes at most 4096 keys)", MANY),
        r("DEL {seq:j:4097}").differs("-ERR too many arguments (DEL takes at most 4096 keys)", MANY),
        r("UNLINK {seq:j:4097}").differs("-ERR too many arguments (UNLINK takes at most 4096 keys)", MANY),
        r("MSETNX {seq:k:8194}").differs("-ERR too many arguments (MSETNX takes at most 4096 keys)", MANY),
    ]),
    // --- transactions ---------------------------------------------------------------
    case("multi exec", &[
        r("MULTI"), r("MSET a 1 b 2"), r("SET c 3 EX 100 GET"), r("INCRBYFLOAT a 0.5"),
        r("GETRANGE b 0 -1"), r("EXPIRE b 100 NX"), r("TTL c"), r("EXISTS a b c d"),
        r("RENAME c d"), r("COPY d e"), r("GETDEL a"), r("SETRANGE b 3 x"), r("MGET a b d e"),
        r("DBSIZE"), secs("EXEC"), secs("TTL d"), r("MULTI"), r("SET k v EX abc"), r("INCR b"),
        r("EXEC"), r("GET k"), r("MULTI"), r("SET k"), r("SET k v"), r("EXEC"), r("GET k"),
        r("MULTI"), r("SET k v PX 10"), r("GETEX k PERSIST"), r("EXEC"), secs("TTL k"),
        r("MULTI"), r("FLUSHALL"), r("SET x 1"), r("KEYS *"), r("EXEC"), r("DBSIZE"),
        r("MULTI"), r("SET y v EXAT {s-1}"), r("EXISTS y"), r("SET y v PXAT {ms+100000}"),
        r("EXPIRE y -1"), r("GET y"), r("SETNX y 1"), r("EXPIREAT y {s+100} NX"), r("EXEC"),
        secs("TTL y"), r("MULTI"), r("GETEX nokey EX 0"), r("SCAN 0 COUNT 0"), r("RENAME nokey x"),
        r("MSET a"), r("EXEC"), r("MULTI"), r("EXPIRE y 100 NX XX"), r("COPY y z DB 1"),
        r("SET z v NX XX"),
        r("EXEC").differs("[-ERR NX and XX, GT or LT options at the same time are not compatible, \
            -ERR DB index is out of range, -ERR syntax error]", ONE_DB),
    ]),
    case("dbsize at the end", &[
        r("MSET a 1 b 2 c 3"), r("SET d 4 EX 100"), r("DEL a"), r("UNLINK b"), r("GETDEL c"),
        r("RENAME d e"), r("COPY e f"), r("SET g 1 PX 1"), until("EXISTS g", ":0"),
        until("DBSIZE", ":2"),
    ]),
];

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

/// One RESP connection over any stream.
struct Conn {
    writer: Box<dyn Write + Send>,
    reader: BufReader<Box<dyn Read>>,
}

impl Conn {
    fn new(writer: Box<dyn Write + Send>, reader: Box<dyn Read>) -> Conn {
        Conn {
            writer,
            reader: BufReader::new(reader),
        }
    }

    fn call(&mut self, args: &[Vec<u8>]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let mut buf = Vec::new();
        resp::encode_command(&args, &mut buf);
        self.writer.write_all(&buf).expect("send a request");
        resp::read_reply(&mut self.reader, &Limits::default()).expect("read a reply")
    }

    /// Sends every request before reading any reply (one burst, as a
    /// pipelining client does) and returns the replies in order. The
    /// requests are written from another thread, so a server that answers
    /// while it reads can never be blocked by a client not reading.
    fn pipeline(&mut self, requests: &[Vec<Vec<u8>>]) -> Vec<Reply> {
        let mut buf = Vec::new();
        for args in requests {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            resp::encode_command(&args, &mut buf);
        }
        let (writer, reader) = (&mut self.writer, &mut self.reader);
        std::thread::scope(|s| {
            let sent = s.spawn(move || writer.write_all(&buf));
            let replies = (requests.iter())
                .map(|_| resp::read_reply(reader, &Limits::default()).expect("read a reply"))
                .collect();
            sent.join().unwrap().expect("send the requests");
            replies
        })
    }

    fn call_str(&mut self, words: &[&str]) -> Reply {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        self.call(&args)
    }
}

/// One of the two servers.
trait Server {
    fn connect(&self) -> Conn;
}

impl Server for RedisServer {
    fn connect(&self) -> Conn {
        let stream = RedisServer::connect(self);
        let timeout = Some(Duration::from_secs(10));
        stream.set_read_timeout(timeout).unwrap();
        let reader = stream.try_clone().unwrap();
        Conn::new(Box::new(stream), Box::new(reader))
    }
}

/// The leader of a raftnode cluster, by client port.
struct Raftnode(u16);

impl Server for Raftnode {
    fn connect(&self) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", self.0)).expect("connect to raftnode");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = stream.try_clone().unwrap();
        Conn::new(Box::new(stream), Box::new(reader))
    }
}

/// A reply on one line: `+OK`, `-ERR ...`, `:5`, `"bulk"`, `nil`, `*nil`,
/// `[a, b]`, `%{k: v}`, `~{a}`, `,1.5`, `#t`, `=text`.
fn show(reply: &Reply) -> String {
    let list = |items: &[Reply]| items.iter().map(show).collect::<Vec<_>>().join(", ");
    match reply {
        Reply::Simple(s) => format!("+{s}"),
        Reply::Error(e) => format!("-{e}"),
        Reply::Integer(n) => format!(":{n}"),
        Reply::Bulk(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Reply::NullBulk => "nil".into(),
        Reply::NullArray => "*nil".into(),
        Reply::Array(items) => format!("[{}]", list(items)),
        Reply::Map(pairs) => {
            let pairs: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", show(k), show(v)))
                .collect();
            format!("%{{{}}}", pairs.join(", "))
        }
        Reply::Set(items) => format!("~{{{}}}", list(items)),
        Reply::Double(d) => format!(",{d}"),
        Reply::Boolean(b) => format!("#{}", if *b { 't' } else { 'f' }),
        Reply::Verbatim(t) => format!("={t:?}"),
    }
}

/// `show`, cut short for a one-line report.
fn brief(reply: &Reply) -> String {
    cut(show(reply))
}

/// `text` cut to 160 characters.
fn cut(text: String) -> String {
    match text.char_indices().nth(160) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// Whether `a` and `b` are equal but for non-negative integers at most
/// `tolerance` apart.
fn near(a: &Reply, b: &Reply, tolerance: i64) -> bool {
    match (a, b) {
        (Reply::Integer(x), Reply::Integer(y)) if *x >= 0 && *y >= 0 => {
            x.abs_diff(*y) <= tolerance as u64
        }
        (Reply::Array(xs), Reply::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| near(x, y, tolerance))
        }
        _ => a == b,
    }
}

/// The request's text with its placeholders filled in:
///
/// - `{s+N}` / `{s-N}`: the unix time in seconds `N` s after / before
///   `start`; `{ms+N}` / `{ms-N}` the same in milliseconds;
/// - `{rep:TEXT:N}`: `TEXT` `N` times, as one word (a long key or value);
/// - `{seq:PREFIX:N}`: `N` words `PREFIX0 PREFIX1 ...` (many keys).
///
/// Anything else in braces is left as it is.
fn fill(request: &str, start: SystemTime) -> String {
    let mut out = String::new();
    let mut rest = request;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..open]);
        match placeholder(&rest[open + 1..close], start) {
            Some(text) => out.push_str(&text),
            None => out.push_str(&rest[open..=close]),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// What one placeholder of [`fill`] stands for, if it is one.
fn placeholder(inner: &str, start: SystemTime) -> Option<String> {
    let since_epoch = start.duration_since(UNIX_EPOCH).unwrap();
    if let Some(spec) = inner.strip_prefix("rep:") {
        let (text, n) = spec.rsplit_once(':')?;
        return Some(text.repeat(n.parse().ok()?));
    }
    if let Some(spec) = inner.strip_prefix("seq:") {
        let (prefix, n) = spec.rsplit_once(':')?;
        let n: usize = n.parse().ok()?;
        let words: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        return Some(words.join(" "));
    }
    let (base, offset) = if let Some(offset) = inner.strip_prefix("ms") {
        (since_epoch.as_millis() as i64, offset)
    } else {
        (since_epoch.as_secs() as i64, inner.strip_prefix('s')?)
    };
    let n: i64 = if let Some(n) = offset.strip_prefix('+') {
        n.parse().ok()?
    } else {
        -offset.strip_prefix('-')?.parse::<i64>().ok()?
    };
    Some((base + n).to_string())
}

fn words(request: &str) -> Vec<Vec<u8>> {
    resp::split_args(request.as_bytes())
        .unwrap_or_else(|e| panic!("the case's request {request:?} does not parse: {e}"))
}

/// Runs one step on one connection and returns the reply to compare.
fn run_step(conn: &mut Conn, step: &Step, request: &str) -> Reply {
    match step.check {
        Check::Scan => full_scan(conn, request),
        Check::Until(wanted) => {
            let deadline = Instant::now() + EXPIRY_WAIT;
            loop {
                let reply = conn.call(&words(request));
                if show(&reply) == wanted || Instant::now() >= deadline {
                    return reply;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        _ => conn.call(&words(request)),
    }
}

/// Iterates `SCAN <cursor> <args>` from cursor 0 until the cursor is 0
/// again. The reply is the sorted set of keys returned, as an array; or the
/// first error; or an error made up here saying what was wrong with the
/// shape of a reply, or that the cursor never came back to 0.
fn full_scan(conn: &mut Conn, args: &str) -> Reply {
    let mut keys = BTreeSet::new();
    let mut cursor = b"0".to_vec();
    for _ in 0..100_000 {
        let mut request = vec![b"SCAN".to_vec(), cursor.clone()];
        request.extend(words(args));
        match conn.call(&request) {
            Reply::Array(parts) => match parts.as_slice() {
                [Reply::Bulk(next), Reply::Array(batch)] => {
                    for key in batch {
                        match key {
                            Reply::Bulk(key) => keys.insert(key.clone()),
                            other => {
                                let shape = show(other);
                                return Reply::Error(format!("harness: SCAN key {shape}"));
                            }
                        };
                    }
                    if next == b"0" {
                        return Reply::Array(keys.into_iter().map(Reply::Bulk).collect());
                    }
                    cursor = next.clone();
                }
                _ => {
                    let shape = show(&Reply::Array(parts));
                    return Reply::Error(format!("harness: SCAN answered {shape}"));
                }
            },
            error @ Reply::Error(_) => return error,
            other => return Reply::Error(format!("harness: SCAN answered {}", show(&other))),
        }
    }
    Reply::Error("harness: SCAN's cursor did not come back to 0".into())
}

/// The reply as `check` compares it: KEYS's array sorted, a single SCAN
/// step's non-error reply as `+<accepted>`, one of RANDOMKEY's allowed keys
/// as `+<one of the keys>`; any other reply as it is. Mismatches are shown
/// in this form, so the report of a run does not depend on hash orders.
fn normalise(check: Check, reply: Reply) -> Reply {
    match (check, reply) {
        (Check::Sorted, Reply::Array(mut items)) => {
            items.sort_by_key(show);
            Reply::Array(items)
        }
        (Check::Accepted, error @ Reply::Error(_)) => error,
        (Check::Accepted, _) => Reply::Simple("<accepted>".into()),
        (Check::OneOf(keys), Reply::Bulk(key))
            if keys.iter().any(|k| k.as_bytes() == key.as_slice()) =>
        {
            Reply::Simple("<one of the keys>".into())
        }
        (_, reply) => reply,
    }
}

/// Whether the two (normalised) replies count as the same under `check`.
fn same(check: Check, theirs: &Reply, ours: &Reply) -> bool {
    match check {
        Check::Near(tolerance) => near(theirs, ours, tolerance),
        _ => theirs == ours,
    }
}

/// Empties a server between cases.
fn reset(conn: &mut Conn) {
    let reply = conn.call_str(&["FLUSHALL"]);
    assert_eq!(reply, Reply::ok(), "FLUSHALL before a case");
}

/// A fresh connection to `server`, in RESP3 if asked.
fn open(server: &dyn Server, resp3: bool) -> Conn {
    let mut conn = server.connect();
    if resp3 {
        let hello = conn.call_str(&["HELLO", "3"]);
        assert!(matches!(hello, Reply::Map(_)), "HELLO 3 answered {hello:?}");
    }
    conn
}

/// How [`compare`] sends a case's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One at a time, in RESP2.
    Resp2,
    /// One at a time, after `HELLO 3`.
    Resp3,
    /// All of a case's requests in one burst before any reply is read, in
    /// RESP2. Cases that wait (SCAN iterations, expiry polls) are left out.
    Pipelined,
}

/// Runs every case on both servers; one line per request whose replies do
/// not count as the same (or whose deliberate difference is not the one
/// recorded).
fn compare(theirs: &dyn Server, ours: &dyn Server, mode: Mode, start: SystemTime) -> Vec<String> {
    let resp3 = mode == Mode::Resp3;
    let mut mismatches = Vec::new();
    for case in CASES {
        let waits = |step: &Step| matches!(step.check, Check::Scan | Check::Until(_));
        if mode == Mode::Pipelined && case.steps.iter().any(waits) {
            continue;
        }
        let requests: Vec<String> = case.steps.iter().map(|s| fill(s.request, start)).collect();
        let replies = |server: &dyn Server| {
            let mut conn = open(server, resp3);
            reset(&mut conn);
            if mode == Mode::Pipelined {
                let all: Vec<Vec<Vec<u8>>> = requests.iter().map(|r| words(r)).collect();
                return conn.pipeline(&all);
            }
            (case.steps.iter().zip(&requests))
                .map(|(step, request)| run_step(&mut conn, step, request))
                .collect::<Vec<Reply>>()
        };
        // Each server runs the whole case in turn: its replies depend only on
        // its own history, and the tolerances cover the time a case takes.
        let (their_replies, our_replies) = (replies(theirs), replies(ours));
        for (i, step) in case.steps.iter().enumerate() {
            let their_reply = normalise(step.check, their_replies[i].clone());
            let our_reply = normalise(step.check, our_replies[i].clone());
            let alike = same(step.check, &their_reply, &our_reply);
            let problem = match step.differs {
                None if alike => None,
                None => Some(String::new()),
                Some(_) if alike => {
                    Some(" (marked as a deliberate difference, but no longer differs)".to_string())
                }
                Some((expected, _)) if show(&our_reply) == expected => None,
                Some((expected, reason)) => Some(format!(
                    " (the deliberate difference was {expected}: {reason})"
                )),
            };
            if let Some(note) = problem {
                let shown = match step.check {
                    Check::Scan => cut(format!("SCAN * {}", requests[i])),
                    _ => cut(requests[i].clone()),
                };
                mismatches.push(format!(
                    "[{mode:?}] {} #{}: {shown} -> redis: {} | ours: {}{note}",
                    case.name,
                    i + 1,
                    brief(&their_reply),
                    brief(&our_reply),
                ));
            }
        }
    }
    mismatches
}

#[test]
fn every_string_key_and_expiry_command_answers_as_a_real_redis_server() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let ours = Raftnode(cluster.nodes[&leader].client_port);
    let start = SystemTime::now();
    let mut mismatches = Vec::new();
    for mode in [Mode::Resp2, Mode::Resp3, Mode::Pipelined] {
        mismatches.extend(compare(&redis, &ours, mode, start));
    }
    for line in &mismatches {
        eprintln!("{line}");
    }
    let requests: usize = CASES.iter().map(|c| c.steps.len()).sum();
    eprintln!(
        "{} mismatches in {} requests x 3 modes ({} cases; RESP2, RESP3, pipelined)",
        mismatches.len(),
        requests,
        CASES.len()
    );
    assert!(mismatches.is_empty(), "{} mismatches", mismatches.len());
}
