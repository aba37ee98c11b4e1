//! The smallest HTTP/1.x server that serves one page: `GET /metrics`.
//!
//! One accept thread hands connections to a fixed pool of [`Limits::workers`]
//! threads; each worker serves one request per connection and closes it
//! (`Connection: close`), so nothing is kept between scrapes. What a
//! scraper, slow or hostile, can hold is bounded:
//!
//! * **threads**: the pool's and the accept thread, whatever connects. When
//!   every worker is busy, further connections wait in the kernel's accept
//!   queue, unread.
//! * **time**: a request's head must arrive whole within
//!   [`Limits::deadline`] of the connection being taken up, however slowly
//!   its bytes come (the deadline is for the whole head, not each read), and
//!   the response must be taken within the same time; a connection that
//!   sends nothing is answered `408` at its deadline and closed.
//! * **memory**: a head longer than [`Limits::max_head`] is answered `431`
//!   and closed without reading the rest (beyond a short drain, so the
//!   answer is not lost to a reset).
//!
//! Answers: `200` with the page for `GET /metrics` (a query string is
//! ignored); `404` for any other path; `405` for another method on
//! `/metrics`; `400` for a request line that is not `METHOD /path
//! HTTP/1.x`. Headers and any body are ignored.

use crate::node::sockets::{self, Sockets};
use crossbeam_channel::{bounded, Receiver};
use log::debug;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What makes the page, once per scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// What one endpoint lets its scrapers hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub workers: usize,
    /// How long a connection may take to send its request head, and
    /// again to take the response.
    pub deadline: Duration,
    /// The longest request head read (request line and headers).
    pub max_head: usize,
}

impl Default for Limits {
    /// Four workers (a scraper or two, and a prober, are served side by
    /// side), 5 s, 8 KiB.
    fn default() -> Self {
        Limits {
            workers: 4,
            deadline: Duration::from_secs(5),
            max_head: 8 * 1024,
        }
    }
}

/// How long a refused request is drained before its connection closes,
/// and how much of it at most.
const DRAIN_FOR: Duration = Duration::from_millis(500);
const DRAIN_BYTES: usize = 1 << 20;

/// A running metrics endpoint. Dropping it stops it.
pub struct MetricsServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    sockets: Arc<Sockets>,
    threads: Vec<JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `render`'s page on `listener` with the default limits.
    pub fn start(listener: TcpListener, render: Render) -> io::Result<MetricsServer> {
        MetricsServer::start_with(listener, render, Limits::default())
    }

    pub fn start_with(
        listener: TcpListener,
        render: Render,
        limits: Limits,
    ) -> io::Result<MetricsServer> {
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Sockets::default());
        // No queue of its own: the accept thread hands a connection over
        // only when a worker is free, and the kernel holds the rest.
        let (to_workers, connections) = bounded::<TcpStream>(0);
        let mut threads = Vec::new();
        for i in 0..limits.workers.max(1) {
            let (connections, sockets, render) =
                (connections.clone(), sockets.clone(), render.clone());
            let worker = thread::Builder::new()
                .name(format!("metrics-{i}"))
                .spawn(move || work(connections, &sockets, &render, limits));
            match worker {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    // The ones started stop once the channel closes.
                    drop(to_workers);
                    for handle in threads {
                        let _ = handle.join();
                    }
                    return Err(e);
                }
            }
        }
        let accepting = {
            let stopping = stopping.clone();
            thread::Builder::new()
                .name("metrics-accept".into())
                .spawn(move || {
                    let what = format!("metrics endpoint {addr}");
                    sockets::accept_loop(&listener, &stopping, &what, |stream| {
                        // Fails only once the workers are gone (halting).
                        let _ = to_workers.send(stream);
                    });
                })
        };
        let server = MetricsServer {
            addr,
            stopping,
            sockets,
            threads,
        };
        match accepting {
            Ok(handle) => {
                let mut server = server;
                server.threads.push(handle);
                debug!("serving metrics on http://{addr}/metrics");
                Ok(server)
            }
            // Dropping the server stops the workers (the channel's sender
            // went with the closure that failed to start).
            Err(e) => Err(e),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the endpoint and every connection, and joins the threads.
    pub fn halt(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.stopping.store(true, Ordering::Release);
        // Workers blocked on a slow client return at once; then the accept
        // thread, woken, sees it is stopping and drops the channel, which
        // ends the workers.
        self.sockets.shutdown_all();
        sockets::wake_listener(self.addr);
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn work(connections: Receiver<TcpStream>, sockets: &Sockets, render: &Render, limits: Limits) {
    for stream in connections.iter() {
        let stream = Arc::new(stream);
        let registered = sockets.register_shared(&stream);
        if let Err(e) = serve(&stream, render, limits) {
            debug!("metrics: a scrape failed: {e}");
        }
        sockets.unregister(registered);
    }
}

/// Answers one request on `stream`.
fn serve(stream: &TcpStream, render: &Render, limits: Limits) -> io::Result<()> {
    let deadline = Instant::now() + limits.deadline;
    let response = match read_head(stream, deadline, limits.max_head)? {
        Head::Complete(head) => respond(&head, render),
        Head::TooLarge => Response::error(431, "Request Header Fields Too Large"),
        Head::TimedOut => Response::error(408, "Request Timeout"),
        Head::Closed => return Ok(()),
    };
    stream.set_write_timeout(Some(limits.deadline))?;
    let mut writer = stream;
    writer.write_all(&response.encode())?;
    if response.status != 200 {
        // The rest of the request may be unread (a body, the rest of a
        // huge head); closing over unread input sends a reset, which can
        // destroy the answer before the client reads it.
        drain(stream);
    }
    Ok(())
}

/// What came of reading a request head.
enum Head {
    Complete(Vec<u8>),
    TooLarge,
    TimedOut,
    /// The client closed the connection, or it failed.
    Closed,
}

/// Reads until the blank line that ends a request head, within `deadline`
/// and `max` bytes.
fn read_head(stream: &TcpStream, deadline: Instant, max: usize) -> io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Head::TimedOut);
        }
        stream.set_read_timeout(Some(left))?;
        let room = (max - head.len()).min(buf.len());
        let n = match (&*stream).read(&mut buf[..room]) {
            Ok(0) => return Ok(Head::Closed),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Head::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(Head::Closed),
        };
        // The end may straddle two reads: look from a little before.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head_end(&head[from..]) {
            head.truncate(from + end);
            return Ok(Head::Complete(head));
        }
        if head.len() >= max {
            return Ok(Head::TooLarge);
        }
    }
}

/// Where the blank line ending a head ends, if it has arrived (`\r\n\r\n`,
/// or a bare `\n\n` from a lax client).
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    extra: &'static str,
    body: String,
}

impl Response {
    fn error(status: u16, reason: &'static str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra: "",
            body: format!("{status} {reason}\n"),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
            self.extra,
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// The answer to a complete request head.
fn respond(head: &[u8], render: &Render) -> Response {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = &head[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some((method, target)) = request_line(line) else {
        return Response::error(400, "Bad Request");
    };
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Response::error(404, "Not Found");
    }
    if method != "GET" {
        let mut response = Response::error(405, "Method Not Allowed");
        response.extra = "Allow: GET\r\n";
        return response;
    }
    Response {
        status: 200,
        reason: "OK",
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        extra: "",
        body: render(),
    }
}

/// `METHOD /target HTTP/1.x`: the method and target, if the line is one.
fn request_line(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    let ok = parts.next().is_none()
        && token(method)
        && target.starts_with('/')
        && visible(target)
        && matches!(version, "HTTP/1.0" | "HTTP/1.1");
    ok.then_some((method, target))
}

/// Reads and drops what the client still sends, for a moment, after our
/// answer (see [`serve`]).
fn drain(stream: &TcpStream) {
    if !sockets::linger(stream, DRAIN_FOR, DRAIN_BYTES) {
        debug!("metrics: a client did not close within {DRAIN_FOR:?} of its answer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn server(limits: Limits) -> MetricsServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let render: Render = Arc::new(|| "# TYPE up gauge\nup 1\n".to_string());
        MetricsServer::start_with(listener, render, limits).unwrap()
    }

    /// Sends `request` and reads the whole response (the server closes).
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    fn status(response: &str) -> &str {
        response.lines().next().unwrap_or_default()
    }

    #[test]
    fn get_metrics_answers_the_page_with_prometheus_content_type() {
        let s = server(Limits::default());
        let response = exchange(
            s.local_addr(),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        assert!(
            response.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{response}"
        );
        assert!(
            response.contains("\r\nContent-Length: 21\r\n"),
            "{response}"
        );
        assert!(
            response.ends_with("\r\n\r\n# TYPE up gauge\nup 1\n"),
            "{response}"
        );
        // A query string is ignored; HTTP/1.0 and bare line feeds are fine.
        let response = exchange(s.local_addr(), b"GET /metrics?x=1 HTTP/1.0\n\n");
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        s.halt();
    }

    #[test]
    fn other_paths_methods_and_malformed_requests_are_refused() {
        let s = server(Limits::default());
        let addr = s.local_addr();
        for (request, want) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 404 Not Found"),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (
                b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (
                b"HEAD /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics HTTP/2\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (
                b"GET  /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\n\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (b"GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ] {
            let response = exchange(addr, request);
            assert_eq!(status(&response), want, "{request:?}");
        }
        let response = exchange(addr, b"PUT /metrics HTTP/1.1\r\n\r\n");
        assert!(response.contains("\r\nAllow: GET\r\n"), "{response}");
        s.halt();
    }

    #[test]
    fn a_huge_head_is_refused_after_reading_at_most_the_limit() {
        let s = server(Limits::default());
        let stream = TcpStream::connect(s.local_addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        request.resize(1 << 20, b'a');
        request.extend_from_slice(b"\r\n\r\n");
        // Written from another thread: the server stops reading early.
        let writer = stream.try_clone().unwrap();
        let sending = thread::spawn(move || {
            let mut writer = writer;
            let _ = writer.write_all(&request);
        });
        let mut reader = io::BufReader::new(&stream);
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert_eq!(first, "HTTP/1.1 431 Request Header Fields Too Large\r\n");
        drop(reader);
        drop(stream);
        sending.join().unwrap();
        // The endpoint still serves.
        let response = exchange(s.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        s.halt();
    }

    #[test]
    fn a_silent_connection_does_not_hold_up_a_scrape() {
        let s = server(Limits::default());
        let addr = s.local_addr();
        // A connection that sends nothing (its deadline is 5 s away).
        let _silent = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let response = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "served alongside: {:?}",
            started.elapsed()
        );
        let halting = Instant::now();
        s.halt();
        assert!(
            halting.elapsed() < Duration::from_secs(2),
            "halt does not wait for the silent client: {:?}",
            halting.elapsed()
        );
    }

    #[test]
    fn when_every_worker_is_held_a_scrape_waits_at_most_the_deadline() {
        let deadline = Duration::from_millis(400);
        let s = server(Limits {
            workers: 2,
            deadline,
            max_head: 8 * 1024,
        });
        let addr = s.local_addr();
        // Two silent clients and one that sends a byte every 100 ms (for
        // longer than the deadline): the deadline is for the whole head, so
        // dribbling does not extend it.
        let mut silent: Vec<TcpStream> =
            (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut dribbler = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let dribbling = thread::spawn(move || {
            for b in b"GET /met" {
                if dribbler.write_all(&[*b]).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            let mut rest = String::new();
            let _ = dribbler.read_to_string(&mut rest);
            rest
        });
        let response = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        let waited = started.elapsed();
        assert_eq!(status(&response), "HTTP/1.1 200 OK");
        // At most: the silent ones' deadline, then the dribbler's.
        assert!(waited < 2 * deadline + Duration::from_secs(1), "{waited:?}");
        for stream in &mut silent {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            assert_eq!(status(&answer), "HTTP/1.1 408 Request Timeout");
        }
        let answer = dribbling.join().unwrap();
        assert_eq!(status(&answer), "HTTP/1.1 408 Request Timeout");
        s.halt();
    }
}
