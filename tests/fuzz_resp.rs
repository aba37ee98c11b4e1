//! Fuzzing the RESP parser (issue 12): inline and multibulk requests,
//! pipelines fed one byte per read, random garbage and mutations of valid
//! requests must never panic, never allocate beyond what the bytes that
//! arrived (and the stated limits) allow, and encodings must read back.
//!
//! `RAFTNODE_FUZZ=N` runs N times as many cases.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use raftnode::redis::resp::{
    encode_command, read_reply, read_request, split_args, Limits, Protocol, Reply, RespError,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Cursor};
use support::fuzz::OneByte;

/// `base` cases, times `RAFTNODE_FUZZ` (see [`support::fuzz::cases`]).
fn cases(base: u32) -> u32 {
    u32::try_from(support::fuzz::cases(base as usize)).unwrap_or(u32::MAX)
}

// --- the case count ----------------------------------------------------------

fn runner(base: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(base),
        failure_persistence: None,
        ..Config::default()
    })
}

// --- counting what this thread allocates ------------------------------------

/// Counts the bytes each thread holds and the most it held, so a test can
/// see what parsing one input cost (tests run on threads of their own).
struct Counting;

thread_local! {
    static HELD: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(bytes: usize) {
    let held = HELD.with(|h| {
        let v = h.get().saturating_add(bytes);
        h.set(v);
        v
    });
    PEAK.with(|p| p.set(p.get().max(held)));
}

fn shrink(bytes: usize) {
    HELD.with(|h| h.set(h.get().saturating_sub(bytes)));
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are thread-local cells with const initializers, which never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grow(new_size);
        shrink(layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result and the most it had allocated at once
/// (beyond what was held when it started).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = HELD.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let result = f();
    (result, PEAK.with(Cell::get) - start)
}

// --- readers -----------------------------------------------------------------

/// A buffered reader that never holds more than one byte.
fn one_byte(input: &[u8]) -> BufReader<OneByte<'_>> {
    BufReader::with_capacity(1, OneByte(input))
}

/// Every request in `r` until the end or an error (which ends the
/// connection): the requests, and whether it ended cleanly.
fn all_requests(r: &mut impl BufRead, limits: &Limits) -> (Vec<Vec<Vec<u8>>>, Result<(), String>) {
    let mut got = Vec::new();
    loop {
        match read_request(r, limits) {
            Ok(Some(args)) => {
                assert!(!args.is_empty(), "an empty request was returned");
                assert!(args.len() <= limits.max_args);
                assert!(args.iter().all(|a| a.len() <= limits.max_bulk_len));
                got.push(args);
            }
            Ok(None) => return (got, Ok(())),
            Err(RespError::Protocol(msg)) => return (got, Err(msg)),
            Err(RespError::Io(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
                return (got, Err("eof".into()));
            }
        }
    }
}

/// The most parsing `input` may allocate: the initial argument vector and
/// bulk buffer (the parser's fixed starting capacities), twice the input
/// (a bulk buffer doubles, never beyond its declared length, and an
/// argument vector of n empty arguments costs 24 bytes for every 6 bytes
/// of `$0\r\n\r\n`), plus the requests themselves.
fn allowance(input: &[u8]) -> usize {
    64 * 1024 + 8 * input.len()
}

// --- generators --------------------------------------------------------------

/// An argument, biased towards the bytes that matter to the framing.
fn arg() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => any::<u8>(),
        1 => prop::sample::select(b"\r\n*$\"' \t\\\0x:+-".to_vec()),
    ];
    prop_oneof![
        8 => prop::collection::vec(byte.clone(), 0..12),
        1 => prop::collection::vec(byte, 0..3000),
    ]
}

fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(arg(), 1..8)
}

/// A plain word for an inline request (no quoting needed).
fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:{}-]{1,12}"
}

/// Valid request encodings: multibulk, or inline with plain words.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        command().prop_map(|args| {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            encode_command(&refs, &mut out);
            out
        }),
        prop::collection::vec(word(), 1..6)
            .prop_map(|w| format!("{}\r\n", w.join(" ")).into_bytes()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let huge = prop::sample::select(vec![
        b"*1000000\r\n".to_vec(),
        b"$4000000000\r\n".to_vec(),
        b"*65536\r\n".to_vec(),
        b"$4194304\r\n".to_vec(),
        b"$-1\r\n".to_vec(),
        b"*-5\r\n".to_vec(),
        b"$99999999999999999999999\r\n".to_vec(),
        b"\"\\x".to_vec(),
        b"\r\n".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), huge).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1..8usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..64usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: usize| {
            if input.is_empty() {
                0
            } else {
                i % (input.len() + 1)
            }
        };
        match m {
            Mutation::Flip(i, b) if !input.is_empty() => {
                let i = i % input.len();
                input[i] ^= b | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, bytes) => {
                let i = at(*i);
                input.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(*i);
                let end = (i + n).min(input.len());
                input.drain(i..end);
            }
            Mutation::Truncate(i) => {
                let i = at(*i);
                input.truncate(i);
            }
            Mutation::Duplicate(i, n) => {
                let i = at(*i);
                let end = (i + n).min(input.len());
                let chunk = input[i..end].to_vec();
                input.splice(end..end, chunk);
            }
        }
    }
    input
}

/// Replies that read back as themselves in `protocol` (RESP2 folds the RESP3
/// types into its own; simple strings cannot hold line breaks).
fn reply(protocol: Protocol) -> impl Strategy<Value = Reply> {
    let line = "[ -~]{0,20}";
    let mut leaf = vec![
        line.prop_map(Reply::Simple).boxed(),
        line.prop_map(Reply::Error).boxed(),
        any::<i64>().prop_map(Reply::Integer).boxed(),
        arg().prop_map(Reply::Bulk).boxed(),
        Just(Reply::NullBulk).boxed(),
    ];
    if protocol == Protocol::Resp2 {
        leaf.push(Just(Reply::NullArray).boxed());
    } else {
        leaf.push(any::<bool>().prop_map(Reply::Boolean).boxed());
        leaf.push(
            prop_oneof![any::<i32>().prop_map(f64::from), -1e300..1e300f64]
                .prop_map(Reply::Double)
                .boxed(),
        );
        leaf.push("[ -~\n]{0,40}".prop_map(Reply::Verbatim).boxed());
    }
    let leaf = prop::strategy::Union::new(leaf);
    leaf.prop_recursive(4, 64, 8, move |inner| {
        let array = prop::collection::vec(inner.clone(), 0..8).prop_map(Reply::Array);
        match protocol {
            Protocol::Resp2 => array.boxed(),
            Protocol::Resp3 => prop_oneof![
                array,
                prop::collection::vec(inner.clone(), 0..8).prop_map(Reply::Set),
                prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Reply::Map),
            ]
            .boxed(),
        }
    })
}

// --- properties --------------------------------------------------------------

#[test]
fn pipelines_read_back_whole_and_one_byte_at_a_time() {
    let strategy = prop::collection::vec(request_bytes(), 1..6);
    runner(1000)
        .run(&strategy, |requests| {
            let stream: Vec<u8> = requests.concat();
            let limits = Limits::default();
            let (whole, end) = all_requests(&mut Cursor::new(&stream[..]), &limits);
            prop_assert_eq!(&end, &Ok(()));
            prop_assert_eq!(whole.len(), requests.len());
            let (bytewise, end) = all_requests(&mut one_byte(&stream), &limits);
            prop_assert_eq!(end, Ok(()));
            prop_assert_eq!(&bytewise, &whole);
            // Each request alone parses to the same.
            for (bytes, expected) in requests.iter().zip(&whole) {
                let got = read_request(&mut Cursor::new(&bytes[..]), &limits).unwrap();
                prop_assert_eq!(got.as_ref(), Some(expected));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn multibulk_encodings_round_trip_one_byte_at_a_time() {
    runner(1000)
        .run(&command(), |args| {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            encode_command(&refs, &mut out);
            let got = read_request(&mut one_byte(&out), &Limits::default()).unwrap();
            prop_assert_eq!(got, Some(args));
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_requests_never_panic_nor_allocate_beyond_their_bytes() {
    let strategy = (
        prop::collection::vec(request_bytes(), 1..4),
        prop::collection::vec(mutation(), 1..5),
    );
    runner(2000)
        .run(&strategy, |(requests, mutations)| {
            let input = mutate(requests.concat(), &mutations);
            let limits = Limits::default();
            let ((whole, end), peak) =
                peak_of(|| all_requests(&mut Cursor::new(&input[..]), &limits));
            prop_assert!(
                peak <= allowance(&input),
                "{peak} bytes for {} of input",
                input.len()
            );
            let ((bytewise, end2), peak) = peak_of(|| all_requests(&mut one_byte(&input), &limits));
            prop_assert!(
                peak <= allowance(&input),
                "{peak} bytes for {} of input",
                input.len()
            );
            // How the bytes arrive changes nothing.
            prop_assert_eq!(whole, bytewise);
            prop_assert_eq!(end, end2);
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_garbage_never_panics_nor_allocates_beyond_its_bytes() {
    let strategy = prop::collection::vec(
        prop_oneof![
            3 => any::<u8>(),
            2 => prop::sample::select(b"*$\r\n0123456789-\" '\\x".to_vec()),
        ],
        0..400,
    );
    runner(2000)
        .run(&strategy, |input| {
            let limits = Limits::default();
            let (_, peak) = peak_of(|| all_requests(&mut Cursor::new(&input[..]), &limits));
            prop_assert!(
                peak <= allowance(&input),
                "{peak} bytes for {} of input",
                input.len()
            );
            // The client side too: garbage from a server.
            let (_, peak) = peak_of(|| {
                let mut r = one_byte(&input);
                while read_reply(&mut r, &limits).is_ok() {}
            });
            prop_assert!(
                peak <= allowance(&input),
                "{peak} bytes for {} of input",
                input.len()
            );
            let _ = split_args(&input);
            Ok(())
        })
        .unwrap();
}

#[test]
fn declared_sizes_allocate_nothing_before_their_bytes_arrive() {
    let limits = Limits::default();
    for header in [
        &b"*1000000\r\n"[..],
        b"*65536\r\n",
        b"*65536\r\n$4194304\r\n",
        b"*1\r\n$4000000000\r\n",
        b"*2\r\n$4194304\r\nabc",
        b"$4194304\r\n",
        b"*65536\r\n*65536\r\n*65536\r\n",
    ] {
        let (result, peak) = peak_of(|| {
            (
                all_requests(&mut one_byte(header), &limits),
                read_reply(&mut one_byte(header), &limits).is_err(),
            )
        });
        // (Without its `*`, a header is an inline request of one word.)
        assert!(header[0] != b'*' || result.0 .0.is_empty(), "{header:?}");
        assert!(result.1, "{header:?} read as a whole reply");
        assert!(peak <= 64 * 1024, "{peak} bytes for {header:?}");
    }
    // A request that passes the size limit is refused before its
    // payload is read, whatever its arguments announce.
    let mut input = b"*65536\r\n".to_vec();
    for _ in 0..3 {
        input.extend_from_slice(b"$4194304\r\n");
        input.extend(std::iter::repeat_n(b'x', 4194304));
        input.extend_from_slice(b"\r\n");
    }
    let ((got, end), peak) = peak_of(|| all_requests(&mut Cursor::new(&input[..]), &limits));
    assert!(got.is_empty());
    assert_eq!(end, Err("too big request".to_string()));
    assert!(peak <= limits.max_request_bytes + 64 * 1024, "{peak}");
}

#[test]
fn replies_read_back_as_encoded_in_both_protocols() {
    for protocol in [Protocol::Resp2, Protocol::Resp3] {
        runner(1000)
            .run(&reply(protocol), |reply| {
                let bytes = reply.to_bytes(protocol);
                let limits = Limits::default();
                let whole = read_reply(&mut Cursor::new(&bytes[..]), &limits).unwrap();
                let bytewise = read_reply(&mut one_byte(&bytes), &limits).unwrap();
                prop_assert_eq!(&whole, &bytewise);
                let same = match (&reply, &whole) {
                    // Doubles read back as the shortest text that names them.
                    (Reply::Double(a), Reply::Double(b)) => a == b,
                    _ => whole == reply,
                };
                prop_assert!(same, "{reply:?} read back as {whole:?}");
                Ok(())
            })
            .unwrap();
    }
}
