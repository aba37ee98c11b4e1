//! One RESP connection to a node, as plain as the load needs: no client id,
//! no retries, no redirects (the callers decide what to do with `-MOVED`).

use crate::redis::resp::{self, Limits, Reply, RespError};
use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a connect, a write or a wait for a reply may take before the
/// connection counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection failed.
#[derive(Debug)]
pub(crate) enum ConnError {
    Connect(io::Error),
    Send(io::Error),
    Receive(RespError),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Connect(e) => write!(f, "cannot connect: {e}"),
            ConnError::Send(e) => write!(f, "sending: {e}"),
            ConnError::Receive(e) => write!(f, "reading a reply: {e}"),
        }
    }
}

pub(crate) struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    limits: Limits,
}

impl Conn {
    pub(crate) fn connect(addr: &str) -> Result<Conn, ConnError> {
        let sockaddr = addr
            .to_socket_addrs()
            .map_err(ConnError::Connect)?
            .next()
            .ok_or_else(|| ConnError::Connect(io::Error::other("no address")))?;
        let stream =
            TcpStream::connect_timeout(&sockaddr, CONNECT_TIMEOUT).map_err(ConnError::Connect)?;
        let setup = |s: &TcpStream| -> io::Result<TcpStream> {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(TIMEOUT))?;
            s.set_write_timeout(Some(TIMEOUT))?;
            s.try_clone()
        };
        let reading = setup(&stream).map_err(ConnError::Connect)?;
        Ok(Conn {
            stream,
            reader: BufReader::with_capacity(64 * 1024, reading),
            limits: Limits::default(),
        })
    }

    /// Writes already encoded commands, in one write.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.stream.write_all(bytes).map_err(ConnError::Send)
    }

    pub(crate) fn read(&mut self) -> Result<Reply, ConnError> {
        resp::read_reply(&mut self.reader, &self.limits).map_err(ConnError::Receive)
    }

    /// Sends one command and reads its reply.
    pub(crate) fn call(&mut self, args: &[&[u8]]) -> Result<Reply, ConnError> {
        let mut buf = Vec::new();
        resp::encode_command(args, &mut buf);
        self.send(&buf)?;
        self.read()
    }
}

/// Connects to `addr`, sends one command and reads its reply.
pub(crate) fn call_once(addr: &str, args: &[&[u8]]) -> Result<Reply, ConnError> {
    Conn::connect(addr)?.call(args)
}

/// The text of a bulk or verbatim reply (INFO, CLUSTER NODES).
pub(crate) fn text(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Verbatim(s) => Some(s.clone()),
        _ => None,
    }
}

/// `field:value` from INFO's text.
pub(crate) fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (name, value) = line.trim_end().split_once(':')?;
        (name == field).then(|| value.to_string())
    })
}

/// Where a `-MOVED <slot> <host:port>` error sends the client, if that is
/// what `text` (an error reply without its dash) is.
pub(crate) fn moved_to(text: &str) -> Option<&str> {
    let target = text.strip_prefix("MOVED ")?.split_whitespace().nth(1)?;
    (!target.is_empty()).then_some(target)
}
