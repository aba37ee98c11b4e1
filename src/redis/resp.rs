//! The client wire format: RESP2, the Redis serialization protocol.
//!
//! raftnode's client port speaks the same protocol as a Redis server, so
//! `redis-cli`, `redis-benchmark`, Redis client libraries and a human typing
//! into `nc` or telnet can all talk to it. This module is the only place that
//! knows the byte layout; the server's per-connection thread calls
//! [`read_request`] in a loop and answers each request with a [`Reply`]
//! encoded by [`Reply::write_to`]. The `raftnode cli` command uses the other
//! direction: [`split_args`] and [`encode_command`] to send, [`read_reply`]
//! and [`render_human`] to show the answer.
//!
//! # Requests
//!
//! A request is a command name followed by its arguments, each an arbitrary
//! byte string. Clients may send it in either of two forms, and may mix them
//! freely on one connection; the first byte of a request decides which form
//! it is (`*` means multibulk, anything else means inline), exactly as Redis
//! decides.
//!
//! **Multibulk** is what client libraries send. It is binary-safe because
//! every argument is length-prefixed, so an argument may contain `\r\n` or
//! any other byte:
//!
//! ```text
//! *3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n
//! ```
//!
//! `*<n>` announces `n` arguments; each is `$<len>\r\n`, then exactly `len`
//! bytes, then `\r\n`. Numbers are written the way Redis's `string2ll`
//! accepts them: optional `-`, no `+`, no leading zeros, no spaces. A count of
//! zero or less (`*0`, `*-1`) is an empty request and is skipped, as in Redis.
//!
//! **Inline** is what a human types: one line ending in `\n` (a `\r` before
//! it is dropped), split into words the way Redis's `sdssplitargs` splits
//! them ([`split_args`] documents the rules): words are separated by
//! whitespace, `"..."` quotes understand C-like escapes including `\xHH`, and
//! `'...'` quotes understand only `\'`. A line holding only whitespace is
//! skipped rather than treated as an error, so pressing Enter in telnet does
//! nothing.
//!
//! # Limits
//!
//! Everything a client sends is untrusted, so every size it announces is
//! checked against [`Limits`] *before* anything is allocated for it, and no
//! read buffers more input than a limit allows:
//!
//! * an inline line may hold at most `max_inline_len` bytes (64 KiB by
//!   default) before its line terminator; a longer line is rejected with
//!   `too big inline request` after reading at most `max_inline_len + 2`
//!   bytes of it;
//! * a multibulk request may announce at most `max_args` arguments (65 536)
//!   — more is `invalid multibulk length`;
//! * one argument may be at most `max_bulk_len` bytes (4 MiB) — more, or a
//!   negative length, is `invalid bulk length`. Even an accepted length is
//!   not allocated up front: the buffer grows as the bytes actually arrive,
//!   so a client announcing 4 MiB and then stalling costs little;
//! * a whole multibulk request may take at most `max_request_bytes` on the
//!   wire (8 MiB: the largest command that can succeed, a CAS with a 64 KiB
//!   key, a 4 MiB expected value and a 1 MiB new one, with room to spare).
//!   Each argument's length is checked against what is left *before* its
//!   bytes are read, so `*65536` followed by 4 MiB bulks is refused at the
//!   third one with `too big request`, having buffered at most 8 MiB
//!   (Redis's `client-query-buffer-limit`, but per request);
//! * [`read_request_metered`] also asks a caller's meter before buffering
//!   each argument, which is how the server charges requests against a
//!   budget shared by all its clients.
//!
//! Nothing else a request declares is trusted either: the argument vector
//! starts at most 1,024 slots long and grows as arguments arrive, so a
//! `*1000000` or `$4000000000` costs nothing until the bytes come.
//!
//! The length lines themselves (`*<n>`, `$<len>`) are read with a small
//! fixed bound, since a valid one is never longer than a sign, 19 digits and
//! `\r\n`.
//!
//! # Errors and end of stream
//!
//! A malformed request is [`RespError::Protocol`], whose text is what Redis
//! puts after `-ERR Protocol error: `; [`RespError::to_reply`] builds that
//! reply. As in Redis, the server should send it and then close the
//! connection, because after a framing error the stream cannot be
//! resynchronised.
//!
//! End of stream *between* requests is the normal way a client leaves:
//! [`read_request`] returns `Ok(None)`. End of stream *inside* a request
//! (a partial multibulk, or an inline line without its `\n`) is reported as
//! `RespError::Io` with kind [`std::io::ErrorKind::UnexpectedEof`], not as a
//! protocol error: the peer is gone, so there is nobody to send an error
//! reply to, and Redis likewise just drops a half-received request silently.
//!
//! Reading is not resumable. An I/O error (including a read timeout) after
//! the first byte of a request has been consumed loses the partial request,
//! and the connection must be dropped. Waiting for the *first* byte consumes
//! nothing, so a server that polls with a socket read timeout may simply call
//! [`read_request`] again after a timeout that happened between requests —
//! but it cannot tell the two cases apart from the error alone, so it should
//! only set short timeouts if it is prepared to close on any timeout.

use log::trace;
use std::fmt;
use std::io::{self, BufRead, Read};

/// Limits on what one request may be; exceeding one is a protocol error.
///
/// The same limits bound replies read by [`read_reply`] (the cli must not
/// trust a server any more than the server trusts a client).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest inline request line, not counting its `\r\n` / `\n`.
    pub max_inline_len: usize,
    /// Longest single bulk string (one argument, or one bulk reply).
    pub max_bulk_len: usize,
    /// Most arguments in one request (and most elements in one reply array).
    pub max_args: usize,
    /// Most bytes one multibulk request may take on the wire: its `*<n>`
    /// line and every argument's `$<len>` line, payload and `\r\n`.
    /// (Replies read by [`read_reply`] are not bound by it.)
    pub max_request_bytes: usize,
}

impl Default for Limits {
    /// 64 KiB inline lines (Redis's `PROTO_INLINE_MAX_SIZE`), 4 MiB bulks
    /// (far below Redis's 512 MB: values are replicated through the Raft log,
    /// so huge ones are a liability), 65 536 arguments, 8 MiB requests.
    fn default() -> Self {
        Limits {
            max_inline_len: 64 * 1024,
            max_bulk_len: 4 * 1024 * 1024,
            max_args: 65_536,
            max_request_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Why a request or reply could not be read.
#[derive(Debug)]
pub enum RespError {
    /// The underlying stream failed, or ended in the middle of a message
    /// (kind [`io::ErrorKind::UnexpectedEof`]).
    Io(io::Error),
    /// The bytes are not valid RESP. The text is what Redis writes after
    /// `-ERR Protocol error: `.
    Protocol(String),
}

impl RespError {
    /// The error reply a server sends before closing the connection, or
    /// `None` for I/O errors (the peer cannot be written to usefully).
    pub fn to_reply(&self) -> Option<Reply> {
        match self {
            RespError::Protocol(msg) => Some(Reply::Error(format!("ERR Protocol error: {msg}"))),
            RespError::Io(_) => None,
        }
    }
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Io(e) => write!(f, "I/O error: {e}"),
            RespError::Protocol(msg) => write!(f, "Protocol error: {msg}"),
        }
    }
}

impl std::error::Error for RespError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RespError::Io(e) => Some(e),
            RespError::Protocol(_) => None,
        }
    }
}

impl From<io::Error> for RespError {
    fn from(e: io::Error) -> Self {
        RespError::Io(e)
    }
}

fn protocol(msg: impl Into<String>) -> RespError {
    RespError::Protocol(msg.into())
}

fn unexpected_eof() -> RespError {
    RespError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "unexpected end of stream",
    ))
}

const UNBALANCED_QUOTES: &str = "unbalanced quotes in request";
/// A multibulk request over [`Limits::max_request_bytes`].
pub const TOO_BIG_REQUEST: &str = "too big request";

/// Longest `*<n>\r\n`, `$<len>\r\n` or `:<int>\r\n` line we will read. The
/// longest valid one is `$-9223372036854775808\r\n` (23 bytes); anything
/// longer is garbage, and reading it with a small bound keeps a client from
/// making us buffer an endless "number".
const MAX_HEADER_LINE: usize = 32;

/// How deeply [`read_reply`] lets arrays nest. raftnode's own replies nest at
/// most a couple of levels; the bound only exists so a hostile server cannot
/// overflow the cli's stack with `*1\r\n*1\r\n*1\r\n...`.
const MAX_REPLY_DEPTH: usize = 128;

/// Initial capacity for a bulk payload and for an argument vector. Larger
/// ones grow as data actually arrives (see the module docs); this mirrors
/// Redis, which preallocates at most 1024 argv slots.
const INITIAL_BULK_CAPACITY: usize = 16 * 1024;
const INITIAL_ARGS_CAPACITY: usize = 1024;
const INITIAL_REPLY_CAPACITY: usize = 16;

// ---------------------------------------------------------------------------
// Low-level reading helpers
// ---------------------------------------------------------------------------

/// Looks at the next byte without consuming it; `None` at end of stream.
/// Consuming nothing is what makes a timeout here harmless (module docs).
fn peek_byte<R: BufRead>(r: &mut R) -> io::Result<Option<u8>> {
    loop {
        match r.fill_buf() {
            Ok(buf) => return Ok(buf.first().copied()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads one `\n`-terminated line into `buf` (cleared first), reading at most
/// `max` bytes including the `\n`, and drops the `\n`.
///
/// Returns `Ok(true)` for a complete line and `Ok(false)` if `max` bytes went
/// by without a newline (the caller reports its own "too long" error). End of
/// stream before the newline is `UnexpectedEof`.
fn read_line_bounded<R: BufRead>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, RespError> {
    buf.clear();
    // `take` is what bounds the read: `read_until` alone would buffer an
    // endless line.
    let n = (&mut *r).take(max as u64).read_until(b'\n', buf)?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(true)
    } else if n >= max {
        Ok(false)
    } else {
        Err(unexpected_eof())
    }
}

/// Reads a `<type><number>\r\n` line and returns the number. `bad` is the
/// protocol message for any malformation (Redis reports a missing `\r`, a
/// non-numeric value and an overlong line all as "invalid ... length").
fn read_number_line<R: BufRead>(r: &mut R, bad: &str) -> Result<i64, RespError> {
    read_number_line_len(r, bad).map(|(n, _)| n)
}

/// [`read_number_line`], also returning how many bytes the line took
/// (with its `\r\n`), for the request size limit.
fn read_number_line_len<R: BufRead>(r: &mut R, bad: &str) -> Result<(i64, usize), RespError> {
    let mut line = [0u8; MAX_HEADER_LINE];
    let mut len = 0;
    // Byte by byte from the reader's buffer: no allocation per header.
    loop {
        let byte = match r.fill_buf() {
            Ok([]) => return Err(unexpected_eof()),
            Ok(buf) => buf[0],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        r.consume(1);
        if byte == b'\n' {
            break;
        }
        if len == MAX_HEADER_LINE - 1 {
            return Err(protocol(bad));
        }
        line[len] = byte;
        len += 1;
    }
    // line = type byte, digits, '\r'
    match line[..len].split_last() {
        Some((b'\r', body)) if !body.is_empty() => parse_int(&body[1..])
            .map(|n| (n, len + 1))
            .ok_or_else(|| protocol(bad)),
        _ => Err(protocol(bad)),
    }
}

/// Parses an integer exactly as Redis's `string2ll` does: an optional `-`,
/// then `0` alone or a digit string not starting with `0`, fitting in an
/// `i64`. No `+`, no spaces, no `-0`.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [b'0'] if !neg => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        // 2^63 is allowed (i64::MIN); wrapping_neg maps it to itself.
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Reads exactly `len` payload bytes and the `\r\n` after them. `len` has
/// already been checked against the limit; the buffer still only grows as
/// bytes arrive, never past `len`.
fn read_bulk_payload<R: BufRead>(r: &mut R, len: usize) -> Result<Vec<u8>, RespError> {
    let mut data = Vec::with_capacity(len.min(INITIAL_BULK_CAPACITY));
    while data.len() < len {
        let n = match r.fill_buf() {
            Ok(avail) => {
                if avail.is_empty() {
                    return Err(unexpected_eof());
                }
                let n = avail.len().min(len - data.len());
                if data.capacity() - data.len() < n {
                    // Double like Vec would, but never beyond `len`.
                    let want = (data.capacity() * 2).max(data.len() + n).min(len);
                    data.reserve_exact(want - data.len());
                }
                data.extend_from_slice(&avail[..n]);
                n
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        r.consume(n);
    }
    let mut crlf = [0u8; 2];
    r.read_exact(&mut crlf)?; // EOF here is UnexpectedEof, as documented
    if &crlf != b"\r\n" {
        // Redis silently skips these two bytes; we check them, because a
        // client whose lengths are off by one would otherwise have its next
        // argument misparsed instead of getting a clear error.
        return Err(protocol("bulk string not terminated by CRLF"));
    }
    Ok(data)
}

/// Renders a byte for an error message: itself if printable, else `\xHH`
/// (Redis inserts the raw byte, but our messages are `String`s and must not
/// carry control characters into a reply).
fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        char::from(b).to_string()
    } else {
        format!("\\x{b:02x}")
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Reads one request (a command and its arguments, each a byte string).
///
/// Returns `Ok(None)` on a clean end of stream between requests. Accepts both
/// the multibulk and the inline form (see the module docs), skips empty
/// requests (`*0`, `*-1`, blank inline lines), and consumes exactly one
/// request, leaving pipelined ones in the reader's buffer. The returned
/// vector is never empty.
///
/// End of stream inside a request is `RespError::Io` with kind
/// `UnexpectedEof`; malformed input is `RespError::Protocol`.
pub fn read_request<R: BufRead>(
    r: &mut R,
    limits: &Limits,
) -> Result<Option<Vec<Vec<u8>>>, RespError> {
    read_request_metered(r, limits, &mut |_| Ok(()))
}

/// [`read_request`], asking `meter` before each multibulk argument is
/// buffered: it is told the request's size so far on the wire, that
/// argument included, and may refuse with the text of the protocol error
/// to answer (the server's budget for all its clients' requests). Inline
/// requests are not metered: they are at most `max_inline_len`.
pub fn read_request_metered<R: BufRead>(
    r: &mut R,
    limits: &Limits,
    meter: &mut dyn FnMut(usize) -> Result<(), String>,
) -> Result<Option<Vec<Vec<u8>>>, RespError> {
    loop {
        let request = match peek_byte(r)? {
            None => return Ok(None),
            Some(b'*') => read_multibulk(r, limits, meter)?,
            Some(_) => read_inline(r, limits)?,
        };
        match request {
            Some(args) => return Ok(Some(args)),
            None => trace!("skipping empty request"),
        }
    }
}

/// Reads a `*<n>` request. `None` means an empty request to skip.
fn read_multibulk<R: BufRead>(
    r: &mut R,
    limits: &Limits,
    meter: &mut dyn FnMut(usize) -> Result<(), String>,
) -> Result<Option<Vec<Vec<u8>>>, RespError> {
    const BAD_COUNT: &str = "invalid multibulk length";
    const BAD_LEN: &str = "invalid bulk length";

    let (count, mut size) = read_number_line_len(r, BAD_COUNT)?;
    if count <= 0 {
        return Ok(None); // Redis ignores *0 and any negative count
    }
    // Checked before anything is sized by it.
    let count = usize::try_from(count).map_err(|_| protocol(BAD_COUNT))?;
    if count > limits.max_args {
        return Err(protocol(BAD_COUNT));
    }
    let mut args = Vec::with_capacity(count.min(INITIAL_ARGS_CAPACITY));
    for _ in 0..count {
        match peek_byte(r)? {
            None => return Err(unexpected_eof()),
            Some(b'$') => {}
            Some(other) => {
                return Err(protocol(format!(
                    "expected '$', got '{}'",
                    show_byte(other)
                )));
            }
        }
        let (len, header) = read_number_line_len(r, BAD_LEN)?;
        let len = usize::try_from(len).map_err(|_| protocol(BAD_LEN))?; // negative
        if len > limits.max_bulk_len {
            return Err(protocol(BAD_LEN));
        }
        // Counted before the payload is read, so it is never buffered.
        size = size.saturating_add(header + len + 2);
        if size > limits.max_request_bytes {
            return Err(protocol(TOO_BIG_REQUEST));
        }
        meter(size).map_err(protocol)?;
        args.push(read_bulk_payload(r, len)?);
    }
    Ok(Some(args))
}

/// Reads an inline request line. `None` means a blank line to skip.
fn read_inline<R: BufRead>(r: &mut R, limits: &Limits) -> Result<Option<Vec<Vec<u8>>>, RespError> {
    let mut line = Vec::new();
    // +2 leaves room for the "\r\n" so a line of exactly max_inline_len
    // bytes is accepted.
    let bound = limits.max_inline_len.saturating_add(2);
    if !read_line_bounded(r, bound, &mut line)? {
        return Err(protocol("too big inline request"));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > limits.max_inline_len {
        // Only reachable with a bare "\n" terminator and max+1 content bytes.
        return Err(protocol("too big inline request"));
    }
    let args = split_args(&line)?;
    if args.is_empty() {
        return Ok(None);
    }
    // Redis has no such check for inline requests, but with a small custom
    // max_inline_len-to-max_args ratio a line could otherwise exceed the
    // argument limit the rest of the server relies on.
    if args.len() > limits.max_args {
        return Err(protocol("too many arguments in inline request"));
    }
    Ok(Some(args))
}

/// C's `isspace` in the "C" locale, which `sdssplitargs` uses to skip blanks
/// and to check what follows a closing quote.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits a human-typed line into arguments exactly like Redis's
/// `sdssplitargs` (used for inline requests and by the interactive cli).
///
/// * Arguments are separated by whitespace. Leading whitespace may be any C
///   `isspace` byte; an unquoted word ends at space, tab, `\r`, `\n` (so a
///   vertical tab or form feed *inside* a word is part of it, as in Redis).
/// * `"..."` understands `\n \r \t \b \a \\ \"` and `\xHH` (exactly two hex
///   digits); a backslash before anything else yields that character.
/// * `'...'` understands only `\'`; every other byte is literal.
/// * A quote may start mid-word (`a"b c"` is `ab c`), but a closing quote
///   must be followed by whitespace or the end of the line.
/// * `""` and `''` are empty arguments.
/// * Because Redis works on a C string, a NUL byte ends the line; a NUL
///   inside an open quote therefore makes the quote unterminated.
///
/// An unterminated quote, or a closing quote followed by something other
/// than whitespace, is `Protocol("unbalanced quotes in request")`.
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    // Reading past the end yields 0, like the C string's terminator; this
    // lets the code below mirror sdssplitargs's `*(p+1)` look-aheads.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_c_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(args);
        }
        let mut current = Vec::new();
        let (mut in_dq, mut in_sq, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if in_dq {
                if let (b'\\', b'x', Some(hi), Some(lo)) =
                    (c, at(p + 1), hex_value(at(p + 2)), hex_value(at(p + 3)))
                {
                    current.push(hi * 16 + lo);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(protocol(UNBALANCED_QUOTES));
                    }
                    done = true;
                } else if c == 0 {
                    return Err(protocol(UNBALANCED_QUOTES));
                } else {
                    current.push(c);
                }
            } else if in_sq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(protocol(UNBALANCED_QUOTES));
                    }
                    done = true;
                } else if c == 0 {
                    return Err(protocol(UNBALANCED_QUOTES));
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    _ => current.push(c),
                }
            }
            if p < line.len() {
                p += 1;
            }
        }
        args.push(current);
    }
}

/// Encodes a command as a multibulk array (what a client sends).
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    push_int(out, args.len() as i64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        push_bulk(out, b'$', arg);
    }
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

/// The protocol version a connection speaks: RESP2 until the client asks for
/// RESP3 with `HELLO 3`, as with Redis 6 and later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    /// The number `HELLO` takes and reports.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// A reply. Encodes exactly as Redis does, in either protocol.
///
/// The RESP3 types (`Map`, `Set`, `Double`, `Boolean`, `Verbatim`) are
/// written in RESP2 the way Redis writes them to a RESP2 client: a map as a
/// flat array of keys and values, a set as an array, a double as a bulk
/// string, a boolean as the integer 1 or 0, and verbatim text as a bulk
/// string. Both null replies become RESP3's single null, `_`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK\r\n`: a short status text.
    Simple(String),
    /// `-ERR message\r\n`; the string is the whole text after `-`, starting
    /// with the error code (`ERR`, `WRONGTYPE`, ...).
    Error(String),
    /// `:5\r\n`
    Integer(i64),
    /// `$5\r\nvalue\r\n`: binary-safe.
    Bulk(Vec<u8>),
    /// `$-1\r\n` (RESP3: `_\r\n`): "no such key".
    NullBulk,
    /// `*2\r\n...`: any replies, possibly nested.
    Array(Vec<Reply>),
    /// `*-1\r\n` (RESP3: `_\r\n`)
    NullArray,
    /// RESP3 `%2\r\n...`: keys and values, in this order.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `~2\r\n...`: members without an order.
    Set(Vec<Reply>),
    /// RESP3 `,3.5\r\n`.
    Double(f64),
    /// RESP3 `#t\r\n` / `#f\r\n`.
    Boolean(bool),
    /// RESP3 `=8\r\ntxt:text\r\n`: text a client should show as it is, line
    /// breaks and all (INFO, CLUSTER NODES).
    Verbatim(String),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_string())
    }

    /// An error reply, following Redis's `addReplyError` convention: the
    /// message normally lacks an error code and gets `ERR ` in front
    /// (`error("syntax error")` is `-ERR syntax error`). A message starting
    /// with `-` carries its own code and is used as is without the dash
    /// (`error("-NOTLEADER 2")` is `-NOTLEADER 2`). A message already
    /// starting with `ERR ` is also kept as is, so it is never doubled.
    /// Use `Reply::Error` directly for full control.
    pub fn error(msg: impl Into<String>) -> Reply {
        let msg = msg.into();
        if let Some(own_code) = msg.strip_prefix('-') {
            Reply::Error(own_code.to_string())
        } else if msg.starts_with("ERR ") || msg == "ERR" {
            Reply::Error(msg)
        } else {
            Reply::Error(format!("ERR {msg}"))
        }
    }

    /// `-ERR wrong number of arguments for '<command>' command`, where
    /// `command` is lower case and a subcommand is `command|sub`.
    pub fn wrong_arity(command: &str) -> Reply {
        Reply::Error(format!(
            "ERR wrong number of arguments for '{command}' command"
        ))
    }

    /// Appends this reply's encoding in `protocol` to `out`.
    ///
    /// Simple and error strings are line-delimited on the wire, so any `\r`
    /// or `\n` in them is replaced by a space (as Redis does for errors)
    /// rather than letting it break the framing.
    pub fn write_to(&self, out: &mut Vec<u8>, protocol: Protocol) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Reply::Simple(s) => push_line(out, b'+', s),
            Reply::Error(s) => push_line(out, b'-', s),
            Reply::Integer(n) => push_header(out, b':', *n),
            Reply::Bulk(data) => push_bulk(out, b'$', data),
            Reply::NullBulk | Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::NullBulk => out.extend_from_slice(b"$-1\r\n"),
            Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(items) => push_aggregate(out, b'*', items, protocol),
            Reply::Set(items) => {
                push_aggregate(out, if resp3 { b'~' } else { b'*' }, items, protocol)
            }
            Reply::Map(pairs) => {
                match resp3 {
                    true => push_header(out, b'%', pairs.len() as i64),
                    false => push_header(out, b'*', 2 * pairs.len() as i64),
                }
                for (key, value) in pairs {
                    key.write_to(out, protocol);
                    value.write_to(out, protocol);
                }
            }
            Reply::Double(d) if resp3 => push_line(out, b',', &format_double(*d)),
            Reply::Double(d) => push_bulk(out, b'$', format_double(*d).as_bytes()),
            Reply::Boolean(b) if resp3 => push_line(out, b'#', if *b { "t" } else { "f" }),
            Reply::Boolean(b) => push_header(out, b':', i64::from(*b)),
            Reply::Verbatim(text) if resp3 => {
                push_header(out, b'=', text.len() as i64 + 4);
                out.extend_from_slice(b"txt:");
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Verbatim(text) => push_bulk(out, b'$', text.as_bytes()),
        }
    }

    /// The encoding as a fresh buffer.
    pub fn to_bytes(&self, protocol: Protocol) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out, protocol);
        out
    }
}

/// A double as Redis writes it: `inf`, `-inf` and `nan` by name, otherwise
/// the shortest text that reads back as the same number, in exponent form
/// when very large or small.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.into()
    } else if d == 0.0 || (1e-5..1e17).contains(&d.abs()) {
        format!("{d}")
    } else {
        format!("{d:e}")
    }
}

fn push_line(out: &mut Vec<u8>, kind: u8, text: &str) {
    out.push(kind);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `<kind><n>\r\n`: an integer, or the length or count that starts a bulk or
/// an aggregate.
fn push_header(out: &mut Vec<u8>, kind: u8, n: i64) {
    out.push(kind);
    push_int(out, n);
    out.extend_from_slice(b"\r\n");
}

fn push_bulk(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    push_header(out, kind, data.len() as i64);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn push_aggregate(out: &mut Vec<u8>, kind: u8, items: &[Reply], protocol: Protocol) {
    push_header(out, kind, items.len() as i64);
    for item in items {
        item.write_to(out, protocol);
    }
}

/// Appends the decimal form of `n` without going through `fmt` (this is on
/// every reply's path).
fn push_int(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

/// Reads one reply (for clients: the `raftnode cli` command and tests).
///
/// The same [`Limits`] apply: a simple or error line may be at most
/// `max_inline_len` bytes, a bulk at most `max_bulk_len`, an array at most
/// `max_args` elements, and arrays may nest at most 128 deep. `$-1` and
/// `*-1` are the null replies; other negative lengths are protocol errors.
/// Lines must end in `\r\n`. Simple and error strings that are not UTF-8 are
/// converted lossily.
///
/// RESP3's types are read too (maps count as two elements per pair against
/// `max_args`); its null `_` reads as [`Reply::NullBulk`], and a verbatim
/// string loses its format prefix. Attributes, pushes and big numbers are
/// not: no raftnode command sends them.
///
/// There is no "clean" end of stream for a client waiting for a reply, so
/// end of stream anywhere, including before the first byte, is `RespError::Io`
/// with kind `UnexpectedEof`.
pub fn read_reply<R: BufRead>(r: &mut R, limits: &Limits) -> Result<Reply, RespError> {
    read_reply_at(r, limits, 0)
}

fn read_reply_at<R: BufRead>(r: &mut R, limits: &Limits, depth: usize) -> Result<Reply, RespError> {
    let kind = peek_byte(r)?.ok_or_else(unexpected_eof)?;
    match kind {
        b'+' | b'-' | b',' | b'#' | b'_' => {
            let text = read_reply_line(r, limits)?;
            match kind {
                b'+' => Ok(Reply::Simple(text)),
                b'-' => Ok(Reply::Error(text)),
                b',' => parse_double(&text)
                    .map(Reply::Double)
                    .ok_or_else(|| protocol("invalid double reply")),
                b'#' => match text.as_str() {
                    "t" => Ok(Reply::Boolean(true)),
                    "f" => Ok(Reply::Boolean(false)),
                    _ => Err(protocol("invalid boolean reply")),
                },
                _ if text.is_empty() => Ok(Reply::NullBulk),
                _ => Err(protocol("invalid null reply")),
            }
        }
        b':' => Ok(Reply::Integer(read_number_line(
            r,
            "invalid integer reply",
        )?)),
        b'$' | b'=' => {
            const BAD_LEN: &str = "invalid bulk length";
            let len = read_number_line(r, BAD_LEN)?;
            if len == -1 && kind == b'$' {
                return Ok(Reply::NullBulk);
            }
            let len = usize::try_from(len).map_err(|_| protocol(BAD_LEN))?;
            if len > limits.max_bulk_len {
                return Err(protocol(BAD_LEN));
            }
            let data = read_bulk_payload(r, len)?;
            if kind == b'$' {
                return Ok(Reply::Bulk(data));
            }
            // `=` carries a three-letter format and a colon before the text.
            match data.get(3) {
                Some(b':') => Ok(Reply::Verbatim(
                    String::from_utf8_lossy(&data[4..]).into_owned(),
                )),
                _ => Err(protocol("invalid verbatim string")),
            }
        }
        b'*' | b'~' | b'%' => {
            const BAD_COUNT: &str = "invalid multibulk length";
            let count = read_number_line(r, BAD_COUNT)?;
            if count == -1 && kind == b'*' {
                return Ok(Reply::NullArray);
            }
            let count = usize::try_from(count).map_err(|_| protocol(BAD_COUNT))?;
            // A map of n pairs holds 2n replies; the limit counts replies.
            let per_entry = if kind == b'%' { 2 } else { 1 };
            if count.saturating_mul(per_entry) > limits.max_args {
                return Err(protocol(BAD_COUNT));
            }
            if depth >= MAX_REPLY_DEPTH {
                return Err(protocol("reply arrays nested too deeply"));
            }
            let mut read_one = || read_reply_at(r, limits, depth + 1);
            // Small: arrays nest, and a declared count at each of 128
            // levels would otherwise reserve megabytes for a few bytes of
            // input (found by tests/fuzz_resp.rs).
            let capacity = count.min(INITIAL_REPLY_CAPACITY);
            if kind == b'%' {
                let mut pairs = Vec::with_capacity(capacity);
                for _ in 0..count {
                    pairs.push((read_one()?, read_one()?));
                }
                return Ok(Reply::Map(pairs));
            }
            let mut items = Vec::with_capacity(capacity);
            for _ in 0..count {
                items.push(read_one()?);
            }
            Ok(match kind {
                b'~' => Reply::Set(items),
                _ => Reply::Array(items),
            })
        }
        other => Err(protocol(format!(
            "unexpected reply type '{}'",
            show_byte(other)
        ))),
    }
}

/// Reads a one-line reply (`+`, `-`, `,`, `#`, `_`) and returns the text
/// after its type byte.
fn read_reply_line<R: BufRead>(r: &mut R, limits: &Limits) -> Result<String, RespError> {
    let mut line = Vec::new();
    // type byte + text + "\r\n"
    let bound = limits.max_inline_len.saturating_add(3);
    if !read_line_bounded(r, bound, &mut line)? {
        return Err(protocol("reply line too long"));
    }
    let Some((b'\r', body)) = line.split_last() else {
        return Err(protocol("reply line not terminated by CRLF"));
    };
    if body.len() > limits.max_inline_len + 1 {
        return Err(protocol("reply line too long"));
    }
    Ok(String::from_utf8_lossy(&body[1..]).into_owned())
}

/// A RESP3 double: a decimal or exponent number, or `inf`, `-inf`, `nan`.
fn parse_double(text: &str) -> Option<f64> {
    match text {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ if text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') => {
            text.parse().ok()
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Human rendering
// ---------------------------------------------------------------------------

/// Renders a reply the way redis-cli does on a terminal: `OK`,
/// `(error) ERR ...`, `(integer) 1`, `"value"` (quoted, with `\n`, `\xHH`
/// etc. for non-printable bytes), `(nil)` for both null replies, arrays as
/// numbered lines (`1) ...`, indices right-aligned, nested arrays indented)
/// and `(empty array)`.
///
/// The result has no trailing newline; multi-line results use `\n`.
pub fn render_human(reply: &Reply) -> String {
    let mut out = String::new();
    render_into(reply, "", &mut out);
    // redis-cli ends every element with '\n'; the caller adds its own.
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// Port of redis-cli's `cliFormatReplyTTY`: `prefix` is the indentation of
/// the enclosing array's elements, used for every element but the first
/// (which follows its parent's index on the same line).
fn render_into(reply: &Reply, prefix: &str, out: &mut String) {
    match reply {
        Reply::Simple(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Reply::Error(s) => {
            out.push_str("(error) ");
            out.push_str(s);
            out.push('\n');
        }
        Reply::Integer(n) => {
            out.push_str(&format!("(integer) {n}\n"));
        }
        Reply::Bulk(data) => {
            push_repr(out, data);
            out.push('\n');
        }
        Reply::NullBulk | Reply::NullArray => out.push_str("(nil)\n"),
        Reply::Double(d) => out.push_str(&format!("(double) {}\n", format_double(*d))),
        Reply::Boolean(b) => out.push_str(if *b { "(true)\n" } else { "(false)\n" }),
        Reply::Verbatim(text) => {
            // Shown as the text it is, with plain line breaks.
            out.push_str(&text.replace("\r\n", "\n"));
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        Reply::Array(items) if items.is_empty() => out.push_str("(empty array)\n"),
        Reply::Set(items) if items.is_empty() => out.push_str("(empty set)\n"),
        Reply::Map(pairs) if pairs.is_empty() => out.push_str("(empty hash)\n"),
        Reply::Array(items) => render_aggregate(items.iter().map(|i| (i, None)), ')', prefix, out),
        Reply::Set(items) => render_aggregate(items.iter().map(|i| (i, None)), '~', prefix, out),
        Reply::Map(pairs) => {
            render_aggregate(pairs.iter().map(|(k, v)| (k, Some(v))), '#', prefix, out)
        }
    }
}

/// The elements of an array (`1) `), set (`1~ `) or map (`1# key => value`),
/// numbered from one with the numbers right-aligned.
fn render_aggregate<'a>(
    items: impl ExactSizeIterator<Item = (&'a Reply, Option<&'a Reply>)>,
    separator: char,
    prefix: &str,
    out: &mut String,
) {
    let width = items.len().to_string().len();
    let child_prefix = format!("{prefix}{}", " ".repeat(width + 2));
    for (i, (item, value)) in items.enumerate() {
        if i > 0 {
            out.push_str(prefix);
        }
        out.push_str(&format!("{:>width$}{separator} ", i + 1));
        render_into(item, &child_prefix, out);
        if let Some(value) = value {
            // The key's line break gives way to the value.
            out.pop();
            out.push_str(" => ");
            render_into(value, &child_prefix, out);
        }
    }
}

/// Port of Redis's `sdscatrepr`: a double-quoted string that [`split_args`]
/// parses back to the same bytes.
fn push_repr(out: &mut String, data: &[u8]) {
    out.push('"');
    for &b in data {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    fn lim() -> Limits {
        Limits::default()
    }

    fn req(input: &[u8]) -> Result<Option<Vec<Vec<u8>>>, RespError> {
        read_request(&mut Cursor::new(input), &lim())
    }

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn expect_protocol<T: fmt::Debug>(result: Result<T, RespError>, msg: &str) {
        match result {
            Err(RespError::Protocol(m)) => assert_eq!(m, msg),
            other => panic!("expected Protocol({msg:?}), got {other:?}"),
        }
    }

    fn expect_eof<T: fmt::Debug>(result: Result<T, RespError>) {
        match result {
            Err(RespError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("expected UnexpectedEof, got {other:?}"),
        }
    }

    // --- multibulk -----------------------------------------------------------

    #[test]
    fn multibulk_parse() {
        let got = req(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n").unwrap();
        assert_eq!(got, Some(args(&["SET", "key", "value"])));
        // Empty bulk argument.
        assert_eq!(
            req(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n").unwrap(),
            Some(args(&["ECHO", ""]))
        );
    }

    #[test]
    fn multibulk_binary_payload_with_crlf() {
        let payload = b"a\r\nb\0\xff\r\n*1\r\n$1\r\n";
        let mut input = b"*2\r\n$3\r\nSET\r\n$".to_vec();
        input.extend_from_slice(payload.len().to_string().as_bytes());
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(payload);
        input.extend_from_slice(b"\r\n");
        let got = req(&input).unwrap().unwrap();
        assert_eq!(got, vec![b"SET".to_vec(), payload.to_vec()]);
    }

    #[test]
    fn multibulk_empty_counts_are_skipped() {
        assert_eq!(
            req(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n").unwrap(),
            Some(args(&["PING"]))
        );
        assert_eq!(req(b"*0\r\n").unwrap(), None);
    }

    #[test]
    fn multibulk_protocol_errors() {
        expect_protocol(req(b"*x\r\n"), "invalid multibulk length");
        expect_protocol(req(b"*\r\n"), "invalid multibulk length");
        expect_protocol(req(b"*+1\r\n$1\r\na\r\n"), "invalid multibulk length");
        expect_protocol(req(b"*01\r\n$1\r\na\r\n"), "invalid multibulk length");
        expect_protocol(req(b"*1\n$1\r\na\r\n"), "invalid multibulk length");
        expect_protocol(req(b"*1 \r\n"), "invalid multibulk length");
        expect_protocol(req(b"*1\r\nx\r\n"), "expected '$', got 'x'");
        expect_protocol(req(b"*1\r\n\x01\r\n"), "expected '$', got '\\x01'");
        expect_protocol(req(b"*1\r\n$abc\r\nabc\r\n"), "invalid bulk length");
        expect_protocol(req(b"*1\r\n$-1\r\n"), "invalid bulk length");
        expect_protocol(req(b"*1\r\n$\r\n\r\n"), "invalid bulk length");
        expect_protocol(
            req(b"*1\r\n$3\r\nabcXY"),
            "bulk string not terminated by CRLF",
        );
        expect_protocol(
            req(b"*1\r\n$3\r\nabcd\r\n"),
            "bulk string not terminated by CRLF",
        );
        // An endless digit string is cut off at a small bound, not buffered.
        let mut long = b"*1\r\n$".to_vec();
        long.extend(std::iter::repeat_n(b'9', 10_000));
        expect_protocol(req(&long), "invalid bulk length");
    }

    #[test]
    fn parse_int_matches_string2ll() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-1"), Some(-1));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    // --- inline --------------------------------------------------------------

    #[test]
    fn inline_parse_plain() {
        assert_eq!(
            req(b"SET key value\r\n").unwrap(),
            Some(args(&["SET", "key", "value"]))
        );
        assert_eq!(req(b"  PING \t \n").unwrap(), Some(args(&["PING"])));
        // A '*' later in the line does not make it multibulk.
        assert_eq!(req(b"KEYS *\n").unwrap(), Some(args(&["KEYS", "*"])));
    }

    #[test]
    fn inline_quotes_and_escapes() {
        let got = req(b"SET \"hello world\" \"a\\nb\\r\\t\\b\\a\\\\\\\"z\\q\"\r\n").unwrap();
        assert_eq!(
            got,
            Some(vec![
                b"SET".to_vec(),
                b"hello world".to_vec(),
                b"a\nb\r\t\x08\x07\\\"zq".to_vec(),
            ])
        );
    }

    #[test]
    fn inline_hex_escapes() {
        let got = split_args(b"\"\\x41\\x7a\\x00\\xFF\\xfF\" \"\\xZZ\" \"\\x4\"").unwrap();
        assert_eq!(
            got,
            vec![b"Az\x00\xff\xff".to_vec(), b"xZZ".to_vec(), b"x4".to_vec()]
        );
    }

    #[test]
    fn inline_single_quotes() {
        let got = split_args(b"'it\\'s' 'a \"b\" \\n' 'x\\\\y'").unwrap();
        assert_eq!(
            got,
            vec![
                b"it's".to_vec(),
                b"a \"b\" \\n".to_vec(),
                b"x\\\\y".to_vec()
            ]
        );
    }

    #[test]
    fn inline_empty_strings_and_mid_word_quotes() {
        assert_eq!(split_args(b"SET k \"\"").unwrap(), args(&["SET", "k", ""]));
        assert_eq!(split_args(b"'' \"\"").unwrap(), args(&["", ""]));
        assert_eq!(split_args(b"a\"b c\" d").unwrap(), args(&["ab c", "d"]));
        // A closing quote may be followed by any C whitespace, including \v.
        assert_eq!(split_args(b"\"a\"\x0bb").unwrap(), args(&["a", "b"]));
        // ...but \v inside an unquoted word belongs to it.
        assert_eq!(split_args(b"a\x0bb").unwrap(), vec![b"a\x0bb".to_vec()]);
        assert_eq!(split_args(b"").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(split_args(b" \t ").unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn inline_nul_ends_the_line_like_a_c_string() {
        assert_eq!(split_args(b"GET a\0b c").unwrap(), args(&["GET", "a"]));
        expect_protocol(split_args(b"GET \"a\0\""), UNBALANCED_QUOTES);
    }

    #[test]
    fn unbalanced_quotes() {
        for bad in [
            &b"GET \"abc"[..],
            b"GET 'abc",
            b"GET \"abc\"def",
            b"GET 'abc'def",
            b"GET \"abc\\\"",
            b"GET \"",
            b"\"a\\",
        ] {
            expect_protocol(split_args(bad), UNBALANCED_QUOTES);
        }
        expect_protocol(req(b"SET \"k v\r\n"), UNBALANCED_QUOTES);
    }

    #[test]
    fn empty_inline_lines_are_skipped() {
        assert_eq!(
            req(b"\r\n\n   \r\n\t\nPING\r\n").unwrap(),
            Some(args(&["PING"]))
        );
        // Only blank lines, then a clean EOF.
        assert_eq!(req(b"\r\n\n  \n").unwrap(), None);
    }

    #[test]
    fn pipelined_mixed_forms_in_order() {
        let input =
            b"PING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\r\nSET a 'b c'\n*1\r\n$4\r\nQUIT\r\nTAIL";
        let mut r = Cursor::new(&input[..]);
        let l = lim();
        assert_eq!(read_request(&mut r, &l).unwrap(), Some(args(&["PING"])));
        assert_eq!(read_request(&mut r, &l).unwrap(), Some(args(&["GET", "k"])));
        assert_eq!(
            read_request(&mut r, &l).unwrap(),
            Some(args(&["SET", "a", "b c"]))
        );
        assert_eq!(read_request(&mut r, &l).unwrap(), Some(args(&["QUIT"])));
        // Exactly one request was consumed each time: the rest is untouched.
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"TAIL");
    }

    #[test]
    fn pipelined_through_tiny_buffer() {
        // A 1-byte BufReader makes every boundary fall between reads.
        let input = b"*1\r\n$4\r\nPING\r\nECHO \"x y\"\r\n*2\r\n$1\r\na\r\n$2\r\n\r\n\r\n";
        let mut r = BufReader::with_capacity(1, &input[..]);
        let l = lim();
        assert_eq!(read_request(&mut r, &l).unwrap(), Some(args(&["PING"])));
        assert_eq!(
            read_request(&mut r, &l).unwrap(),
            Some(args(&["ECHO", "x y"]))
        );
        assert_eq!(
            read_request(&mut r, &l).unwrap(),
            Some(vec![b"a".to_vec(), b"\r\n".to_vec()])
        );
        assert_eq!(read_request(&mut r, &l).unwrap(), None);
    }

    // --- limits --------------------------------------------------------------

    fn small() -> Limits {
        Limits {
            max_inline_len: 10,
            max_bulk_len: 5,
            max_args: 3,
            max_request_bytes: 64,
        }
    }

    #[test]
    fn limit_bulk_len() {
        let l = small();
        let ok = read_request(&mut Cursor::new(&b"*1\r\n$5\r\nabcde\r\n"[..]), &l).unwrap();
        assert_eq!(ok, Some(args(&["abcde"])));
        expect_protocol(
            read_request(&mut Cursor::new(&b"*1\r\n$6\r\nabcdef\r\n"[..]), &l),
            "invalid bulk length",
        );
        // A huge announced length fails before anything is allocated for it.
        expect_protocol(
            req(b"*1\r\n$9223372036854775807\r\n"),
            "invalid bulk length",
        );
        expect_protocol(req(b"*1\r\n$4194305\r\n"), "invalid bulk length");
    }

    #[test]
    fn limit_args() {
        let l = small();
        let ok = read_request(
            &mut Cursor::new(&b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"[..]),
            &l,
        );
        assert_eq!(ok.unwrap(), Some(args(&["a", "b", "c"])));
        expect_protocol(
            read_request(&mut Cursor::new(&b"*4\r\n"[..]), &l),
            "invalid multibulk length",
        );
        expect_protocol(req(b"*9223372036854775807\r\n"), "invalid multibulk length");
        expect_protocol(req(b"*65537\r\n"), "invalid multibulk length");
        expect_protocol(
            read_request(&mut Cursor::new(&b"a b c d\n"[..]), &l),
            "too many arguments in inline request",
        );
    }

    #[test]
    fn limit_inline_len() {
        let l = small();
        // Exactly max_inline_len bytes, with either terminator, is fine.
        let r = read_request(&mut Cursor::new(&b"0123456789\r\n"[..]), &l);
        assert_eq!(r.unwrap(), Some(args(&["0123456789"])));
        let r = read_request(&mut Cursor::new(&b"0123456789\n"[..]), &l);
        assert_eq!(r.unwrap(), Some(args(&["0123456789"])));
        // One more byte is not, whether or not a newline comes later.
        expect_protocol(
            read_request(&mut Cursor::new(&b"01234567890\n"[..]), &l),
            "too big inline request",
        );
        expect_protocol(
            read_request(&mut Cursor::new(&b"01234567890\r\n"[..]), &l),
            "too big inline request",
        );
        // No newline at all: rejected after a bounded read, leaving the rest
        // of the stream unread.
        let big = vec![b'a'; 1000];
        let mut cur = Cursor::new(&big[..]);
        expect_protocol(read_request(&mut cur, &l), "too big inline request");
        assert_eq!(cur.position(), 12);
        // Same with the default limit.
        let big = vec![b'a'; 64 * 1024 + 100];
        expect_protocol(req(&big), "too big inline request");
    }

    // --- end of stream -------------------------------------------------------

    #[test]
    fn clean_eof_is_none() {
        assert_eq!(req(b"").unwrap(), None);
        let mut r = Cursor::new(&b"PING\r\n"[..]);
        assert!(read_request(&mut r, &lim()).unwrap().is_some());
        assert_eq!(read_request(&mut r, &lim()).unwrap(), None);
    }

    #[test]
    fn eof_mid_request_is_unexpected_eof() {
        let full = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        // Every proper prefix is a request cut off by EOF.
        for cut in 1..full.len() {
            expect_eof(req(&full[..cut]));
        }
        assert!(req(full).unwrap().is_some());
        expect_eof(req(b"PING"));
        expect_eof(req(b"GET \"unterminated"));
    }

    // --- replies -------------------------------------------------------------

    #[test]
    fn reply_encoding_matches_redis() {
        let cases: Vec<(Reply, &[u8])> = vec![
            (Reply::ok(), b"+OK\r\n"),
            (Reply::Simple(String::new()), b"+\r\n"),
            (Reply::Simple("a\r\nb".into()), b"+a  b\r\n"),
            (Reply::error("unknown command"), b"-ERR unknown command\r\n"),
            (
                Reply::error("ERR already prefixed"),
                b"-ERR already prefixed\r\n",
            ),
            (Reply::error("-NOTLEADER 3"), b"-NOTLEADER 3\r\n"),
            (Reply::Error("WRONGTYPE x\ny".into()), b"-WRONGTYPE x y\r\n"),
            (Reply::Integer(5), b":5\r\n"),
            (Reply::Integer(0), b":0\r\n"),
            (Reply::Integer(-42), b":-42\r\n"),
            (Reply::Integer(i64::MAX), b":9223372036854775807\r\n"),
            (Reply::Integer(i64::MIN), b":-9223372036854775808\r\n"),
            (Reply::Bulk(b"hello".to_vec()), b"$5\r\nhello\r\n"),
            (Reply::Bulk(Vec::new()), b"$0\r\n\r\n"),
            (Reply::Bulk(b"a\r\nb".to_vec()), b"$4\r\na\r\nb\r\n"),
            (Reply::NullBulk, b"$-1\r\n"),
            (Reply::NullArray, b"*-1\r\n"),
            (Reply::Array(vec![]), b"*0\r\n"),
            (
                Reply::Array(vec![Reply::Bulk(b"a".to_vec()), Reply::Integer(5)]),
                b"*2\r\n$1\r\na\r\n:5\r\n",
            ),
            (
                Reply::Array(vec![
                    Reply::Array(vec![Reply::NullBulk, Reply::ok()]),
                    Reply::error("x"),
                ]),
                b"*2\r\n*2\r\n$-1\r\n+OK\r\n-ERR x\r\n",
            ),
        ];
        for (reply, bytes) in cases {
            assert_eq!(
                reply.to_bytes(Protocol::Resp2),
                bytes,
                "{reply:?} encoded as {:?}",
                String::from_utf8_lossy(&reply.to_bytes(Protocol::Resp2))
            );
        }
    }

    /// Each type in both protocols, as redis-server 7.0.15 writes it
    /// (checked against a real server: `HELLO`, `GET` of a missing key,
    /// `CONFIG GET`, `INFO`, `CLUSTER NODES` on RESP2 and RESP3 connections).
    #[test]
    fn encode_every_type_in_resp2_and_resp3() {
        let map = Reply::Map(vec![
            (Reply::Bulk(b"save".to_vec()), Reply::Bulk(Vec::new())),
            (Reply::Bulk(b"proto".to_vec()), Reply::Integer(3)),
        ]);
        let set = Reply::Set(vec![Reply::Bulk(b"a".to_vec()), Reply::Integer(1)]);
        let cases: Vec<(Reply, &[u8], &[u8])> = vec![
            (Reply::ok(), b"+OK\r\n", b"+OK\r\n"),
            (Reply::error("x"), b"-ERR x\r\n", b"-ERR x\r\n"),
            (Reply::Integer(-7), b":-7\r\n", b":-7\r\n"),
            (Reply::Bulk(b"v".to_vec()), b"$1\r\nv\r\n", b"$1\r\nv\r\n"),
            (Reply::NullBulk, b"$-1\r\n", b"_\r\n"),
            (Reply::NullArray, b"*-1\r\n", b"_\r\n"),
            (
                map.clone(),
                b"*4\r\n$4\r\nsave\r\n$0\r\n\r\n$5\r\nproto\r\n:3\r\n",
                b"%2\r\n$4\r\nsave\r\n$0\r\n\r\n$5\r\nproto\r\n:3\r\n",
            ),
            (Reply::Map(vec![]), b"*0\r\n", b"%0\r\n"),
            (set, b"*2\r\n$1\r\na\r\n:1\r\n", b"~2\r\n$1\r\na\r\n:1\r\n"),
            (Reply::Double(3.5), b"$3\r\n3.5\r\n", b",3.5\r\n"),
            (Reply::Double(-0.25), b"$5\r\n-0.25\r\n", b",-0.25\r\n"),
            (Reply::Double(1e300), b"$5\r\n1e300\r\n", b",1e300\r\n"),
            (Reply::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n"),
            (
                Reply::Double(f64::NEG_INFINITY),
                b"$4\r\n-inf\r\n",
                b",-inf\r\n",
            ),
            (Reply::Boolean(true), b":1\r\n", b"#t\r\n"),
            (Reply::Boolean(false), b":0\r\n", b"#f\r\n"),
            (
                Reply::Verbatim("# Keyspace\r\n".into()),
                b"$12\r\n# Keyspace\r\n\r\n",
                b"=16\r\ntxt:# Keyspace\r\n\r\n",
            ),
            (
                Reply::Array(vec![Reply::NullBulk, map.clone()]),
                b"*2\r\n$-1\r\n*4\r\n$4\r\nsave\r\n$0\r\n\r\n$5\r\nproto\r\n:3\r\n",
                b"*2\r\n_\r\n%2\r\n$4\r\nsave\r\n$0\r\n\r\n$5\r\nproto\r\n:3\r\n",
            ),
        ];
        for (reply, resp2, resp3) in cases {
            let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let got2 = reply.to_bytes(Protocol::Resp2);
            let got3 = reply.to_bytes(Protocol::Resp3);
            assert_eq!(got2, resp2, "{reply:?} in RESP2: {}", show(&got2));
            assert_eq!(got3, resp3, "{reply:?} in RESP3: {}", show(&got3));
        }
    }

    #[test]
    fn resp3_replies_read_back() {
        let all = vec![
            Reply::Map(vec![
                (
                    Reply::Bulk(b"k".to_vec()),
                    Reply::Set(vec![Reply::Integer(1)]),
                ),
                (Reply::Simple("d".into()), Reply::Double(-2.5)),
            ]),
            Reply::Map(vec![]),
            Reply::Set(vec![]),
            Reply::Double(1e-300),
            Reply::Double(f64::INFINITY),
            Reply::Boolean(true),
            Reply::Boolean(false),
            Reply::Verbatim("line 1\r\nline 2\n".into()),
            Reply::NullBulk,
        ];
        let mut stream = Vec::new();
        for r in &all {
            r.write_to(&mut stream, Protocol::Resp3);
        }
        let mut reader = BufReader::with_capacity(3, &stream[..]);
        for expected in &all {
            assert_eq!(&read_reply(&mut reader, &lim()).unwrap(), expected);
        }
        let rr = |b: &[u8]| read_reply(&mut Cursor::new(b), &lim());
        assert!(matches!(rr(b",nan\r\n"), Ok(Reply::Double(d)) if d.is_nan()));
        expect_protocol(rr(b",x\r\n"), "invalid double reply");
        expect_protocol(rr(b"#x\r\n"), "invalid boolean reply");
        expect_protocol(rr(b"_x\r\n"), "invalid null reply");
        expect_protocol(rr(b"=3\r\nabc\r\n"), "invalid verbatim string");
        expect_protocol(rr(b"%-1\r\n"), "invalid multibulk length");
        // A map of n pairs counts 2n against the element limit.
        expect_protocol(
            read_reply(&mut Cursor::new(&b"%3\r\n"[..]), &small()),
            "invalid multibulk length",
        );
    }

    #[test]
    fn render_resp3_types_as_redis_cli_does() {
        let hello = Reply::Map(vec![
            (
                Reply::Bulk(b"server".to_vec()),
                Reply::Bulk(b"redis".to_vec()),
            ),
            (Reply::Bulk(b"proto".to_vec()), Reply::Integer(3)),
            (Reply::Bulk(b"modules".to_vec()), Reply::Array(vec![])),
        ]);
        assert_eq!(
            render_human(&hello),
            "1# \"server\" => \"redis\"\n2# \"proto\" => (integer) 3\n3# \"modules\" => (empty array)"
        );
        let nested = Reply::Array(vec![Reply::Map(vec![(
            Reply::Bulk(b"k".to_vec()),
            Reply::Array(vec![Reply::Integer(1), Reply::Integer(2)]),
        )])]);
        assert_eq!(
            render_human(&nested),
            "1) 1# \"k\" => 1) (integer) 1\n      2) (integer) 2"
        );
        assert_eq!(render_human(&Reply::Map(vec![])), "(empty hash)");
        assert_eq!(render_human(&Reply::Set(vec![])), "(empty set)");
        assert_eq!(
            render_human(&Reply::Set(vec![Reply::Integer(1)])),
            "1~ (integer) 1"
        );
        assert_eq!(render_human(&Reply::Double(1.5)), "(double) 1.5");
        assert_eq!(render_human(&Reply::Boolean(true)), "(true)");
        assert_eq!(
            render_human(&Reply::Verbatim("a:1\r\nb:2\r\n".into())),
            "a:1\nb:2"
        );
    }

    #[test]
    fn protocol_error_reply_text() {
        let e = RespError::Protocol("invalid bulk length".into());
        assert_eq!(e.to_string(), "Protocol error: invalid bulk length");
        assert_eq!(
            e.to_reply().unwrap().to_bytes(Protocol::Resp2),
            b"-ERR Protocol error: invalid bulk length\r\n"
        );
        assert!(RespError::from(io::Error::other("x")).to_reply().is_none());
    }

    #[test]
    fn encode_command_bytes() {
        let mut out = Vec::new();
        encode_command(&[b"SET", b"k", b""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn read_reply_round_trips_every_variant() {
        let all = vec![
            Reply::ok(),
            Reply::Simple(String::new()),
            Reply::Simple("héllo".into()),
            Reply::Error("ERR no".into()),
            Reply::Integer(0),
            Reply::Integer(i64::MIN),
            Reply::Integer(i64::MAX),
            Reply::Bulk(b"x\r\ny\0\xff".to_vec()),
            Reply::Bulk(Vec::new()),
            Reply::NullBulk,
            Reply::NullArray,
            Reply::Array(vec![]),
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::Array(vec![Reply::NullBulk, Reply::Bulk(b"z".to_vec())]),
                Reply::NullArray,
            ]),
        ];
        // One after another in one stream, through a tiny buffer.
        let mut stream = Vec::new();
        for r in &all {
            r.write_to(&mut stream, Protocol::Resp2);
        }
        let mut reader = BufReader::with_capacity(2, &stream[..]);
        for expected in &all {
            assert_eq!(&read_reply(&mut reader, &lim()).unwrap(), expected);
        }
        expect_eof(read_reply(&mut reader, &lim()));
    }

    #[test]
    fn read_reply_errors() {
        let rr = |b: &[u8]| read_reply(&mut Cursor::new(b), &lim());
        expect_protocol(rr(b"?what\r\n"), "unexpected reply type '?'");
        expect_protocol(rr(b"$-2\r\n"), "invalid bulk length");
        expect_protocol(rr(b"*-2\r\n"), "invalid multibulk length");
        expect_protocol(rr(b":1x\r\n"), "invalid integer reply");
        expect_protocol(rr(b"+OK\n"), "reply line not terminated by CRLF");
        expect_protocol(rr(b"$3\r\nabcde"), "bulk string not terminated by CRLF");
        expect_eof(rr(b"$3\r\nab"));
        expect_eof(rr(b"*2\r\n:1\r\n"));
        expect_eof(rr(b"+OK"));
        let l = small();
        expect_protocol(
            read_reply(&mut Cursor::new(&b"$6\r\nabcdef\r\n"[..]), &l),
            "invalid bulk length",
        );
        expect_protocol(
            read_reply(&mut Cursor::new(&b"*4\r\n"[..]), &l),
            "invalid multibulk length",
        );
        expect_protocol(
            read_reply(&mut Cursor::new(&b"+0123456789a\r\n"[..]), &l),
            "reply line too long",
        );
        let ok = read_reply(&mut Cursor::new(&b"+0123456789\r\n"[..]), &l).unwrap();
        assert_eq!(ok, Reply::Simple("0123456789".into()));
        // Deep nesting is refused instead of overflowing the stack.
        let deep = b"*1\r\n".repeat(10_000);
        expect_protocol(rr(&deep), "reply arrays nested too deeply");
    }

    #[test]
    fn render_human_examples() {
        assert_eq!(render_human(&Reply::ok()), "OK");
        assert_eq!(render_human(&Reply::error("nope")), "(error) ERR nope");
        assert_eq!(render_human(&Reply::Integer(-3)), "(integer) -3");
        assert_eq!(render_human(&Reply::Bulk(b"bar".to_vec())), "\"bar\"");
        assert_eq!(
            render_human(&Reply::Bulk(b"a\"b\\c\n\r\t\x07\x08\x00\xe9 ~".to_vec())),
            "\"a\\\"b\\\\c\\n\\r\\t\\a\\b\\x00\\xe9 ~\""
        );
        assert_eq!(render_human(&Reply::NullBulk), "(nil)");
        assert_eq!(render_human(&Reply::NullArray), "(nil)");
        assert_eq!(render_human(&Reply::Array(vec![])), "(empty array)");
        let arr = Reply::Array(vec![
            Reply::Bulk(b"a".to_vec()),
            Reply::Integer(2),
            Reply::NullBulk,
        ]);
        assert_eq!(render_human(&arr), "1) \"a\"\n2) (integer) 2\n3) (nil)");
        let nested = Reply::Array(vec![
            Reply::Array(vec![Reply::Bulk(b"x".to_vec()), Reply::Bulk(b"y".to_vec())]),
            Reply::Array(vec![]),
            Reply::ok(),
        ]);
        assert_eq!(
            render_human(&nested),
            "1) 1) \"x\"\n   2) \"y\"\n2) (empty array)\n3) OK"
        );
        // Ten or more elements: indices are right-aligned, nesting indents by
        // the wider index.
        let mut items: Vec<Reply> = (1..=10).map(Reply::Integer).collect();
        items[9] = Reply::Array(vec![Reply::Integer(1), Reply::Integer(2)]);
        let text = render_human(&Reply::Array(items));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], " 1) (integer) 1");
        assert_eq!(lines[8], " 9) (integer) 9");
        assert_eq!(lines[9], "10) 1) (integer) 1");
        assert_eq!(lines[10], "    2) (integer) 2");
        assert_eq!(lines.len(), 11);
    }

    // --- property-style ------------------------------------------------------

    /// Knuth's MMIX LCG: deterministic, dependency-free randomness.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn bytes(&mut self) -> Vec<u8> {
            let len = match self.below(10) {
                0 => 0,
                1 => self.below(3000) as usize,
                _ => self.below(12) as usize,
            };
            // Bias toward bytes that matter to the framing and quoting.
            const SPECIAL: &[u8] = b"\r\n*$\"'\\ \t\0x";
            (0..len)
                .map(|_| {
                    if self.below(3) == 0 {
                        SPECIAL[self.below(SPECIAL.len() as u64) as usize]
                    } else {
                        self.below(256) as u8
                    }
                })
                .collect()
        }
    }

    #[test]
    fn property_encode_command_round_trips() {
        let mut rng = Lcg(0x5eed);
        let l = lim();
        for _ in 0..200 {
            // A pipeline of several random commands in one stream.
            let commands: Vec<Vec<Vec<u8>>> = (0..1 + rng.below(5))
                .map(|_| (0..1 + rng.below(8)).map(|_| rng.bytes()).collect())
                .collect();
            let mut stream = Vec::new();
            for cmd in &commands {
                let refs: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
                encode_command(&refs, &mut stream);
            }
            let cap = 1 + rng.below(64) as usize;
            let mut r = BufReader::with_capacity(cap, &stream[..]);
            for cmd in &commands {
                assert_eq!(read_request(&mut r, &l).unwrap().as_ref(), Some(cmd));
            }
            assert_eq!(read_request(&mut r, &l).unwrap(), None);
        }
    }

    #[test]
    fn property_repr_parses_back_with_split_args() {
        // redis-cli's quoting (render_human of a bulk) is exactly what
        // sdssplitargs undoes, so a quoted value can be pasted back.
        let mut rng = Lcg(42);
        for _ in 0..500 {
            let values: Vec<Vec<u8>> = (0..1 + rng.below(4)).map(|_| rng.bytes()).collect();
            let line = values
                .iter()
                .map(|v| render_human(&Reply::Bulk(v.clone())))
                .collect::<Vec<_>>()
                .join(" ");
            assert_eq!(split_args(line.as_bytes()).unwrap(), values, "{line}");
            // And the same line works as an inline request.
            let inline = format!("{line}\r\n");
            let got = read_request(&mut Cursor::new(inline.as_bytes()), &lim()).unwrap();
            assert_eq!(got, Some(values));
        }
    }
}
