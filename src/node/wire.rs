//! The peer wire: how Raft messages cross TCP between nodes.
//!
//! A connection carries messages one way, from the node that dialed it to the
//! node that accepted it; each node dials every peer it sends to, so replies
//! travel on the replier's own connection. Every frame is a 4-byte big-endian
//! payload length followed by that many bytes of payload, encoded by
//! [`crate::codec`].
//!
//! The first frame on a connection is a [`Hello`] naming the cluster, the
//! sender and the intended receiver, and the sender's addresses and data-dir
//! incarnation. The receiver answers with one [`HelloReply`] and, if it
//! accepted, from then on only reads
//! [`Envelope`](crate::raft::message::Envelope)s. Refused (and the refusal
//! logged on both sides): a node of another cluster; a node whose data dir
//! is not the one the cluster recorded for its id (it was wiped: it forgot
//! its votes and log, and must be removed and added back); and a node whose
//! removal the receiver has committed, which is told so and stops. Nodes of
//! the cluster that the receiver does not (yet) know as members are
//! accepted — a leader added since this node last caught up must reach it —
//! but cannot vote here (the core ignores their vote requests).
//!
//! Frames longer than the configured limit are refused before any allocation,
//! and a payload that does not decode closes the connection: both come from a
//! broken or hostile peer, and neither is allowed to crash the node. A frame's
//! payload is read into memory as it arrives, so a peer that declares a large
//! frame and sends little costs what it sent, not what it declared.
//!
//! Until the handshake is done the other end is a stranger, so the handshake
//! frames have a limit of their own, [`HANDSHAKE_MAX_FRAME`] (4 KiB: the
//! largest legal [`Hello`], with every string at its cap
//! [`MAX_HELLO_FIELD`], is about 1.6 KiB, and a [`HelloReply`]'s reason is
//! cut to [`MAX_REASON`]), and must arrive whole before a deadline
//! ([`Deadline`]), however slowly its bytes trickle in. Only an accepted peer
//! may send frames up to the configured limit.

use crate::codec::{self, CodecError};
use crate::raft::message::{Index, NodeId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The default largest frame a node accepts.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// The largest handshake frame ([`Hello`] or [`HelloReply`]) read or written.
/// Well above the largest legal one (see the module docs), and small enough
/// that the unauthenticated connections a node serves at once cost little.
pub const HANDSHAKE_MAX_FRAME: usize = 4 * 1024;

/// The longest cluster id or address, in bytes, that a [`Hello`] may carry
/// (a host name is at most 253 bytes).
pub const MAX_HELLO_FIELD: usize = 512;

/// The longest refusal reason sent in a [`HelloReply`]; longer ones are cut.
pub const MAX_REASON: usize = 1024;

/// A frame's payload is read into memory this much at a time at first, then
/// in steps that double with what has arrived, never past the declared
/// length.
const READ_CHUNK: usize = 64 * 1024;

/// The first frame on every peer connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub cluster_id: String,
    pub from: NodeId,
    pub to: NodeId,
    /// Where the sender serves clients, if it does.
    pub client_addr: Option<String>,
    /// Where the sender listens for peers: how a node that does not know
    /// the configuration yet (it is joining) answers its leader.
    pub raft_addr: String,
    /// The incarnation of the sender's data dir, which must match the one
    /// the cluster recorded for it.
    pub incarnation: u64,
}

impl Hello {
    /// Why this hello is not one a node sends: a string over
    /// [`MAX_HELLO_FIELD`].
    pub fn oversized_field(&self) -> Option<String> {
        let fields = [
            ("cluster id", Some(&self.cluster_id)),
            ("client address", self.client_addr.as_ref()),
            ("raft address", Some(&self.raft_addr)),
        ];
        fields.into_iter().find_map(|(what, value)| {
            let len = value?.len();
            (len > MAX_HELLO_FIELD)
                .then(|| format!("its {what} is {len} bytes long, over {MAX_HELLO_FIELD}"))
        })
    }
}

/// The receiver's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Carries the receiver's incarnation, which the dialer checks likewise.
    Accepted {
        incarnation: u64,
    },
    Refused {
        reason: String,
    },
    /// The sender was removed from the cluster by the entry at `index`,
    /// which the receiver has committed: it must stop.
    Removed {
        index: Index,
    },
}

impl HelloReply {
    /// A refusal, its reason cut to [`MAX_REASON`] bytes (at a character
    /// boundary), so that the reply always fits in a handshake frame.
    pub fn refused(mut reason: String) -> HelloReply {
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON - 3;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str("...");
        }
        HelloReply::Refused { reason }
    }
}

#[derive(Debug)]
pub enum WireError {
    Io(io::Error),
    /// The peer closed the connection cleanly between frames.
    Closed,
    /// A frame longer than the limit: the peer is broken or hostile.
    FrameTooLarge {
        len: usize,
        limit: usize,
    },
    Codec(CodecError),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "i/o error: {e}"),
            WireError::Closed => f.write_str("connection closed"),
            WireError::FrameTooLarge { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the {limit}-byte limit")
            }
            WireError::Codec(e) => write!(f, "undecodable payload: {e}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> WireError {
        WireError::Io(e)
    }
}

/// Appends one frame holding `value` to `buf`, so several frames can be
/// written with a single system call.
pub fn encode_frame<T: Serialize>(
    value: &T,
    limit: usize,
    buf: &mut Vec<u8>,
) -> Result<(), WireError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    codec::encode_into(value, buf).map_err(WireError::Codec)?;
    let len = buf.len() - start - 4;
    if len > limit || u32::try_from(len).is_err() {
        buf.truncate(start);
        return Err(WireError::FrameTooLarge { len, limit });
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Writes one frame holding `value`.
pub fn write_frame<T: Serialize, W: Write>(
    w: &mut W,
    value: &T,
    limit: usize,
) -> Result<(), WireError> {
    let mut buf = Vec::new();
    encode_frame(value, limit, &mut buf)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. A clean EOF before the first byte is [`WireError::Closed`].
pub fn read_frame<T: DeserializeOwned, R: Read>(r: &mut R, limit: usize) -> Result<T, WireError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(WireError::Closed),
            Ok(0) => return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(WireError::FrameTooLarge { len, limit });
    }
    let mut payload = Vec::new();
    let mut filled = 0;
    while filled < len {
        if filled == payload.len() {
            // Grow with what has arrived, not with what was declared.
            let grow = (len - filled).min(filled.max(READ_CHUNK));
            payload.reserve_exact(grow);
            payload.resize(filled + grow, 0);
        }
        match r.read(&mut payload[filled..]) {
            Ok(0) => return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::Io(e)),
        }
    }
    codec::decode(&payload).map_err(WireError::Codec)
}

/// Reads a stream against a deadline for everything read through it: each
/// read may block only until the deadline, then fails with
/// [`io::ErrorKind::TimedOut`]. A per-read timeout alone would let a peer
/// that sends a byte now and then hold the connection forever.
pub struct Deadline<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> Deadline<'a> {
    /// Reads from `stream` until `timeout` from now. The stream's read
    /// timeout is changed as it goes; set it again after use.
    pub fn new(stream: &'a TcpStream, timeout: Duration) -> Deadline<'a> {
        Deadline {
            stream,
            deadline: Instant::now() + timeout,
        }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake did not arrive in time",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        match (&mut &*self.stream).read(buf) {
            // Blocked until the timeout, which was the deadline.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake did not arrive in time",
            )),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::{Envelope, Message};

    fn vote() -> Envelope {
        Envelope {
            from: 1,
            to: 2,
            term: 3,
            message: Message::RequestVote {
                last_log_index: 4,
                last_log_term: 2,
                leadership_transfer: false,
            },
        }
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut buf = Vec::new();
        encode_frame(&vote(), DEFAULT_MAX_FRAME, &mut buf).unwrap();
        let hello = Hello {
            cluster_id: "c".into(),
            from: 1,
            to: 2,
            client_addr: Some("127.0.0.1:7001".into()),
            raft_addr: "127.0.0.1:7000".into(),
            incarnation: 0x0123_4567_89ab_cdef,
        };
        encode_frame(&hello, DEFAULT_MAX_FRAME, &mut buf).unwrap();
        assert!(u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize + 4 < buf.len());
        let mut r = &buf[..];
        assert_eq!(
            read_frame::<Envelope, _>(&mut r, DEFAULT_MAX_FRAME).unwrap(),
            vote()
        );
        assert_eq!(
            read_frame::<Hello, _>(&mut r, DEFAULT_MAX_FRAME).unwrap(),
            hello
        );
        assert!(matches!(
            read_frame::<Hello, _>(&mut r, DEFAULT_MAX_FRAME),
            Err(WireError::Closed)
        ));
    }

    #[test]
    fn oversize_frames_are_refused_both_ways() {
        let mut buf = Vec::new();
        let big = vec![7u8; 100];
        assert!(matches!(
            encode_frame(&big, 50, &mut buf),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert!(buf.is_empty());
        // A header claiming 4 GiB is refused without allocating it.
        let mut r = &[0xff, 0xff, 0xff, 0xff, 1, 2][..];
        assert!(matches!(
            read_frame::<Vec<u8>, _>(&mut r, DEFAULT_MAX_FRAME),
            Err(WireError::FrameTooLarge {
                len: 0xffff_ffff,
                ..
            })
        ));
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let mut r = &[0, 0, 0, 3, 0xff, 0xff, 0xff][..];
        assert!(matches!(
            read_frame::<Envelope, _>(&mut r, DEFAULT_MAX_FRAME),
            Err(WireError::Codec(_))
        ));
        let mut r = &[0, 0, 0, 9, 1][..];
        assert!(matches!(
            read_frame::<Envelope, _>(&mut r, DEFAULT_MAX_FRAME),
            Err(WireError::Io(_))
        ));
        let mut r = &[0, 0][..];
        assert!(matches!(
            read_frame::<Envelope, _>(&mut r, DEFAULT_MAX_FRAME),
            Err(WireError::Io(_))
        ));
    }

    #[test]
    fn the_largest_legal_handshake_frames_fit_their_limit() {
        let field = "é".repeat(MAX_HELLO_FIELD / 2);
        let hello = Hello {
            cluster_id: field.clone(),
            from: u64::MAX,
            to: u64::MAX,
            client_addr: Some(field.clone()),
            raft_addr: field,
            incarnation: u64::MAX,
        };
        assert_eq!(hello.oversized_field(), None);
        let mut buf = Vec::new();
        encode_frame(&hello, HANDSHAKE_MAX_FRAME, &mut buf).unwrap();
        assert!(buf.len() < HANDSHAKE_MAX_FRAME / 2, "{}", buf.len());
        let longer = Hello {
            raft_addr: "x".repeat(MAX_HELLO_FIELD + 1),
            ..hello
        };
        assert!(longer.oversized_field().unwrap().contains("raft address"));
        // Reasons are cut, at a character boundary.
        let reply = HelloReply::refused("ü".repeat(10 * MAX_REASON));
        let HelloReply::Refused { reason } = &reply else {
            unreachable!()
        };
        assert!(reason.len() <= MAX_REASON && reason.ends_with("..."));
        buf.clear();
        encode_frame(&reply, HANDSHAKE_MAX_FRAME, &mut buf).unwrap();
        let short = HelloReply::refused("no".into());
        assert_eq!(
            short,
            HelloReply::Refused {
                reason: "no".into()
            }
        );
    }

    /// Yields one byte per read, as a slow peer's socket would.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.is_empty()) {
                (Some((&b, rest)), false) => {
                    buf[0] = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn frames_arriving_a_byte_at_a_time_decode() {
        let mut buf = Vec::new();
        encode_frame(&vote(), DEFAULT_MAX_FRAME, &mut buf).unwrap();
        let big = vec![9u8; 3 * READ_CHUNK + 7];
        encode_frame(&big, DEFAULT_MAX_FRAME, &mut buf).unwrap();
        let mut r = OneByte(&buf);
        assert_eq!(read_frame::<Envelope, _>(&mut r, 64).unwrap(), vote());
        assert_eq!(
            read_frame::<Vec<u8>, _>(&mut r, DEFAULT_MAX_FRAME).unwrap(),
            big
        );
        assert!(matches!(
            read_frame::<Envelope, _>(&mut r, 64),
            Err(WireError::Closed)
        ));
    }

    /// A peer that sends a byte every 20 ms never waits out a per-read
    /// timeout of 200 ms, but the deadline for the whole frame ends it.
    #[test]
    fn a_deadline_bounds_the_whole_frame_not_each_read() {
        use std::net::TcpListener;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        struct Stop(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);
        impl Drop for Stop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
                if let Some(t) = self.1.take() {
                    let _ = t.join();
                }
            }
        }
        let flag = stop.clone();
        let dripper = std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(addr) else {
                return;
            };
            let _ = s.write_all(&100u32.to_be_bytes());
            let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
            while !flag.load(Ordering::SeqCst) && s.write_all(b"x").is_ok() {
                // Paced by a read that times out (the node sends nothing).
                let _ = s.read(&mut [0u8; 1]);
            }
        });
        let _stop = Stop(stop, Some(dripper));
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let start = Instant::now();
        let mut r = Deadline::new(&stream, Duration::from_millis(300));
        match read_frame::<Vec<u8>, _>(&mut r, HANDSHAKE_MAX_FRAME) {
            Err(WireError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() >= Duration::from_millis(300));
    }
}
