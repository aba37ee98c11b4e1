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
//! broken or hostile peer, and neither is allowed to crash the node.

use crate::codec::{self, CodecError};
use crate::raft::message::{Index, NodeId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;
use std::io::{self, Read, Write};

/// The default largest frame a node accepts.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

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
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    codec::decode(&payload).map_err(WireError::Codec)
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
}
