//! A fault-injecting TCP proxy for raftnode's tests.
//!
//! raftnode nodes talk over one-way connections: the node that wants to send
//! dials its peer, sends a handshake frame, reads one handshake reply frame and
//! then only writes. Every frame is a 4-byte big-endian length followed by that
//! many payload bytes. A test puts one proxy on every ordered pair of nodes: node
//! A's address for peer B is the listen address of the link A→B, which forwards
//! to B's real address. [`Net`] owns all the links of one test.
//!
//! Each link has a [`LinkMode`], read again for every frame, so a change applies
//! at once, also to connections that are already open:
//!
//! * `Pass` forwards every frame as soon as it arrives, in order.
//! * `Cut` is a blackhole. Switching a link to `Cut` closes its open connections;
//!   new connections are still accepted, but whatever the dialer sends is
//!   swallowed and nothing is answered, so the dialer's wait for the handshake
//!   reply times out, just as it would behind a real partition. Leaving `Cut`
//!   closes those blackholed connections so the dialer notices and redials.
//! * `Lossy` drops each data frame with probability `drop_frames` and closes the
//!   whole connection on a data frame with probability `drop_connections`. The
//!   handshake always passes, order is preserved.
//! * `Slow` delays every frame (the handshake too) by `delay` plus a uniformly
//!   random extra of less than `jitter`, without ever reordering.
//! * `Reorder` holds each data frame back with probability `probability` for a
//!   time between `hold_min` and `hold_max`, while the frames after it pass.
//! * `Flaky` is the "unreliable network" of the scenarios: each data frame is
//!   dropped with probability `drop_frames`, every frame is delayed by a random
//!   jitter below `jitter`, and with probability `long_delay_probability` a data
//!   frame is delayed by `long_delay` more. Frames can overtake each other.
//!
//! In every mode but `Cut` the handshake is forwarded, and no data frame is ever
//! delivered before the handshake of its connection. The bytes the target sends
//! back (the handshake reply) are relayed unchanged. Random decisions come from
//! a generator seeded with the `Net`'s seed, the link and the connection's
//! number on that link, so a run decides the same way again, thread timing
//! aside. A frame longer than 64 MiB is taken for garbage and closes its
//! connection; I/O errors never panic, they just end the connection.
//!
//! [`Net::shutdown`] (also run on drop) closes every socket and joins every
//! thread the proxy started.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, unbounded, Receiver, Sender};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Frames longer than this are garbage: the connection is closed.
const MAX_FRAME_LEN: usize = 64 << 20;
/// How long the proxy tries to reach the target of a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a delivery thread with nothing scheduled sleeps between checks.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

static NEXT_NET_ID: AtomicU64 = AtomicU64::new(1);

/// How a link treats the frames that cross it. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkMode {
    /// Forward everything at once, in order.
    Pass,
    /// Blackhole: open connections are closed, new ones are accepted but
    /// everything sent is swallowed and nothing is answered.
    Cut,
    /// Drop each data frame with probability `drop_frames`; close the
    /// connection on a data frame with probability `drop_connections`.
    Lossy {
        drop_frames: f64,
        drop_connections: f64,
    },
    /// Delay every frame by `delay` plus uniform(0..`jitter`), keeping order.
    Slow { delay: Duration, jitter: Duration },
    /// Hold a data frame back for `hold_min..=hold_max` with probability
    /// `probability`, letting later frames pass it.
    Reorder {
        probability: f64,
        hold_min: Duration,
        hold_max: Duration,
    },
    /// Drop with probability `drop_frames`, delay by uniform(0..`jitter`) and,
    /// with probability `long_delay_probability`, by `long_delay` more.
    Flaky {
        drop_frames: f64,
        jitter: Duration,
        long_delay_probability: f64,
        long_delay: Duration,
    },
}

/// What the proxy did, summed over links (or for one link).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections accepted from dialers.
    pub connections: u64,
    /// Connections the proxy closed on purpose (`Cut`, `Lossy`, leaving `Cut`).
    pub connections_dropped: u64,
    /// Frames written to the target, handshakes included.
    pub frames_forwarded: u64,
    /// Frames dropped or swallowed by a blackhole.
    pub frames_dropped: u64,
    /// Frames scheduled for later than their arrival.
    pub frames_delayed: u64,
}

impl NetStats {
    fn plus(self, other: NetStats) -> NetStats {
        NetStats {
            connections: self.connections + other.connections,
            connections_dropped: self.connections_dropped + other.connections_dropped,
            frames_forwarded: self.frames_forwarded + other.frames_forwarded,
            frames_dropped: self.frames_dropped + other.frames_dropped,
            frames_delayed: self.frames_delayed + other.frames_delayed,
        }
    }
}

impl fmt::Display for NetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frames forwarded={} dropped={} delayed={}, connections={} dropped={}",
            self.frames_forwarded,
            self.frames_dropped,
            self.frames_delayed,
            self.connections,
            self.connections_dropped
        )
    }
}

/// All the links of one test. Dropping it shuts every proxy down.
pub struct Net {
    shared: Arc<Shared>,
    links: Mutex<BTreeMap<(u64, u64), Arc<Link>>>,
}

impl Net {
    /// A network without links; `seed` drives every random decision.
    pub fn new(seed: u64) -> Net {
        Net {
            shared: Arc::new(Shared {
                id: NEXT_NET_ID.fetch_add(1, Ordering::Relaxed),
                seed,
                stopping: AtomicBool::new(false),
                threads: Mutex::new(Vec::new()),
                live_threads: AtomicUsize::new(0),
            }),
            links: Mutex::new(BTreeMap::new()),
        }
    }

    /// Creates the proxy for link `from`→`to`, listening on 127.0.0.1:0 and
    /// forwarding to `target`; returns its listen address (what `from` should
    /// dial for `to`). Panics if the link exists already or binding fails.
    pub fn add_link(&self, from: u64, to: u64, target: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("netproxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("netproxy: listener address");
        let link = Arc::new(Link::new(from, to, addr, target));
        {
            let mut links = self.links.lock();
            assert!(
                !links.contains_key(&(from, to)),
                "netproxy: link {from}->{to} exists already"
            );
            links.insert((from, to), Arc::clone(&link));
        }
        let shared = Arc::clone(&self.shared);
        let name = self.shared.thread_name("acc", &link);
        self.shared
            .spawn(name, move || accept_loop(&shared, &link, listener));
        addr
    }

    /// Points new connections of `from`→`to` at `target` (a restarted node may
    /// listen elsewhere). Open connections keep their target.
    pub fn set_target(&self, from: u64, to: u64, target: SocketAddr) {
        self.link(from, to).state.lock().target = target;
    }

    /// Sets the mode of `from`→`to`; switching to `Cut` closes its connections.
    pub fn set(&self, from: u64, to: u64, mode: LinkMode) {
        self.link(from, to).set_mode(mode);
    }

    /// The current mode of `from`→`to`.
    pub fn mode(&self, from: u64, to: u64) -> LinkMode {
        self.link(from, to).mode()
    }

    /// `set(from, to, LinkMode::Cut)`.
    pub fn cut(&self, from: u64, to: u64) {
        self.set(from, to, LinkMode::Cut);
    }

    /// `set(from, to, LinkMode::Pass)`.
    pub fn heal_link(&self, from: u64, to: u64) {
        self.set(from, to, LinkMode::Pass);
    }

    /// Cuts every link between nodes of different groups (both ways) and heals
    /// every link within a group. Links touching a node that is in no group
    /// are left as they are.
    pub fn partition(&self, groups: &[&[u64]]) {
        let group_of = |node: u64| groups.iter().position(|group| group.contains(&node));
        for link in self.all_links() {
            match (group_of(link.from), group_of(link.to)) {
                (Some(a), Some(b)) if a == b => link.set_mode(LinkMode::Pass),
                (Some(_), Some(_)) => link.set_mode(LinkMode::Cut),
                _ => {}
            }
        }
    }

    /// Cuts every link to and from `node`.
    pub fn isolate(&self, node: u64) {
        for link in self.all_links() {
            if link.from == node || link.to == node {
                link.set_mode(LinkMode::Cut);
            }
        }
    }

    /// Sets every link back to `Pass`; open connections are kept (blackholed
    /// ones are closed so their dialers redial).
    pub fn heal(&self) {
        for link in self.all_links() {
            link.set_mode(LinkMode::Pass);
        }
    }

    /// What every link did so far, summed.
    pub fn stats(&self) -> NetStats {
        self.all_links()
            .iter()
            .fold(NetStats::default(), |sum, link| {
                sum.plus(link.stats.snapshot())
            })
    }

    /// What link `from`→`to` did so far.
    pub fn link_stats(&self, from: u64, to: u64) -> NetStats {
        self.link(from, to).stats.snapshot()
    }

    /// Closes every socket and joins every proxy thread. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for link in self.all_links() {
            link.close_all();
            // Wake the blocking accept; it sees `stopping` and returns.
            let _ = TcpStream::connect_timeout(&link.addr, CONNECT_TIMEOUT);
        }
        self.shared.join_all();
    }

    fn link(&self, from: u64, to: u64) -> Arc<Link> {
        match self.links.lock().get(&(from, to)) {
            Some(link) => Arc::clone(link),
            None => panic!("netproxy: no link {from}->{to}"),
        }
    }

    fn all_links(&self) -> Vec<Arc<Link>> {
        self.links.lock().values().cloned().collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// State every proxy thread of one `Net` shares.
struct Shared {
    id: u64,
    seed: u64,
    stopping: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    live_threads: AtomicUsize,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Thread names start with `np<net id>-` so tests can find them.
    fn thread_name(&self, kind: &str, link: &Link) -> String {
        format!("np{}-{kind}-{}>{}", self.id, link.from, link.to)
    }

    /// Starts a tracked thread; false if it could not be started (also when
    /// shutting down, so that `join_all` cannot miss it).
    fn spawn(self: &Arc<Self>, name: String, body: impl FnOnce() + Send + 'static) -> bool {
        let mut threads = self.threads.lock();
        if self.stopping() {
            return false;
        }
        join_finished(&mut threads);
        self.live_threads.fetch_add(1, Ordering::SeqCst);
        let guard = LiveThread(Arc::clone(self));
        let spawned = thread::Builder::new().name(name).spawn(move || {
            let _guard = guard;
            body();
        });
        match spawned {
            Ok(handle) => {
                threads.push(handle);
                true
            }
            Err(_) => false, // the closure, guard included, is dropped
        }
    }

    /// Joins until no thread is left; threads started meanwhile are joined too.
    fn join_all(&self) {
        loop {
            let handles = std::mem::take(&mut *self.threads.lock());
            if handles.is_empty() {
                return;
            }
            for handle in handles {
                let _ = handle.join();
            }
        }
    }
}

fn join_finished(threads: &mut Vec<JoinHandle<()>>) {
    let (finished, running): (Vec<_>, Vec<_>) =
        threads.drain(..).partition(|handle| handle.is_finished());
    *threads = running;
    for handle in finished {
        let _ = handle.join();
    }
}

/// Counts a proxy thread as live until its body returns.
struct LiveThread(Arc<Shared>);

impl Drop for LiveThread {
    fn drop(&mut self) {
        self.0.live_threads.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One ordered pair of nodes and its proxy.
struct Link {
    from: u64,
    to: u64,
    addr: SocketAddr,
    state: Mutex<LinkState>,
    stats: Counters,
}

struct LinkState {
    mode: LinkMode,
    target: SocketAddr,
    conns: Vec<Arc<Conn>>,
    accepted: u64,
}

impl Link {
    fn new(from: u64, to: u64, addr: SocketAddr, target: SocketAddr) -> Link {
        Link {
            from,
            to,
            addr,
            state: Mutex::new(LinkState {
                mode: LinkMode::Pass,
                target,
                conns: Vec::new(),
                accepted: 0,
            }),
            stats: Counters::default(),
        }
    }

    fn mode(&self) -> LinkMode {
        self.state.lock().mode.clone()
    }

    /// Mode, target and number of a newly accepted connection.
    fn on_accept(&self) -> (LinkMode, SocketAddr, u64) {
        bump(&self.stats.connections);
        let mut state = self.state.lock();
        state.accepted += 1;
        (state.mode.clone(), state.target, state.accepted)
    }

    /// Sets the mode and closes the connections that no longer fit it:
    /// forwarding ones when it is `Cut`, blackholed ones when it is not.
    fn set_mode(&self, mode: LinkMode) {
        let mut state = self.state.lock();
        state.mode = mode;
        let cut = state.mode == LinkMode::Cut;
        for conn in &state.conns {
            if conn.is_blackhole() != cut {
                self.drop_connection(conn);
            }
        }
        state.conns.retain(|conn| !conn.is_closed());
    }

    /// Tracks `conn` for closing, unless it is already out of place.
    fn register(&self, shared: &Shared, conn: &Arc<Conn>) {
        let mut state = self.state.lock();
        state.conns.retain(|conn| !conn.is_closed());
        if shared.stopping() {
            conn.close();
        } else if conn.is_blackhole() != (state.mode == LinkMode::Cut) {
            self.drop_connection(conn);
        } else {
            state.conns.push(Arc::clone(conn));
        }
    }

    fn drop_connection(&self, conn: &Conn) {
        if conn.close() {
            bump(&self.stats.connections_dropped);
        }
    }

    fn close_all(&self) {
        for conn in self.state.lock().conns.drain(..) {
            conn.close();
        }
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    connections_dropped: AtomicU64,
    frames_forwarded: AtomicU64,
    frames_dropped: AtomicU64,
    frames_delayed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> NetStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        NetStats {
            connections: get(&self.connections),
            connections_dropped: get(&self.connections_dropped),
            frames_forwarded: get(&self.frames_forwarded),
            frames_dropped: get(&self.frames_dropped),
            frames_delayed: get(&self.frames_delayed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The sockets of one proxied connection, kept so they can be shut down.
struct Conn {
    dialer: TcpStream,
    /// `None` for a blackholed connection.
    target: Option<TcpStream>,
    closed: AtomicBool,
    /// Dropped on close, which wakes the delivery thread.
    stop: Mutex<Option<Sender<()>>>,
}

impl Conn {
    fn new(dialer: TcpStream, target: Option<TcpStream>) -> (Arc<Conn>, Receiver<()>) {
        let (stop_tx, stop_rx) = bounded(0);
        let conn = Conn {
            dialer,
            target,
            closed: AtomicBool::new(false),
            stop: Mutex::new(Some(stop_tx)),
        };
        (Arc::new(conn), stop_rx)
    }

    fn is_blackhole(&self) -> bool {
        self.target.is_none()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Shuts both sockets down; true if this call was the one that closed it.
    fn close(&self) -> bool {
        if self.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        let _ = self.dialer.shutdown(Shutdown::Both);
        if let Some(target) = &self.target {
            let _ = target.shutdown(Shutdown::Both);
        }
        self.stop.lock().take();
        true
    }
}

fn accept_loop(shared: &Arc<Shared>, link: &Arc<Link>, listener: TcpListener) {
    for incoming in listener.incoming() {
        if shared.stopping() {
            return;
        }
        match incoming {
            Ok(dialer) => start_connection(shared, link, dialer),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn start_connection(shared: &Arc<Shared>, link: &Arc<Link>, dialer: TcpStream) {
    let _ = dialer.set_nodelay(true);
    let (mode, target, number) = link.on_accept();
    if mode == LinkMode::Cut {
        start_blackhole(shared, link, dialer);
    } else {
        let seed = mix(&[shared.seed, link.from, link.to, number]);
        start_forwarding(shared, link, dialer, target, StdRng::seed_from_u64(seed));
    }
}

/// Accepts a connection on a cut link: reads and discards everything.
fn start_blackhole(shared: &Arc<Shared>, link: &Arc<Link>, dialer: TcpStream) {
    let Ok(reader) = dialer.try_clone() else {
        let _ = dialer.shutdown(Shutdown::Both);
        return;
    };
    let (conn, _stop) = Conn::new(dialer, None);
    link.register(shared, &conn);
    let (l, c) = (Arc::clone(link), Arc::clone(&conn));
    if !shared.spawn(shared.thread_name("bh", link), move || {
        swallow(&l, &c, reader)
    }) {
        conn.close();
    }
}

/// Connects to the target and starts the reader, delivery and reply threads.
fn start_forwarding(
    shared: &Arc<Shared>,
    link: &Arc<Link>,
    dialer: TcpStream,
    target_addr: SocketAddr,
    rng: StdRng,
) {
    let target = match TcpStream::connect_timeout(&target_addr, CONNECT_TIMEOUT) {
        Ok(target) => target,
        Err(_) => {
            let _ = dialer.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = target.set_nodelay(true);
    let clones = (
        dialer.try_clone(),
        dialer.try_clone(),
        target.try_clone(),
        target.try_clone(),
    );
    let (Ok(dialer_in), Ok(dialer_out), Ok(target_in), Ok(target_out)) = clones else {
        let _ = dialer.shutdown(Shutdown::Both);
        let _ = target.shutdown(Shutdown::Both);
        return;
    };
    let (conn, stop) = Conn::new(dialer, Some(target));
    link.register(shared, &conn);
    let (frames_tx, frames_rx) = unbounded();
    let (l1, c1) = (Arc::clone(link), Arc::clone(&conn));
    let (l2, c2) = (Arc::clone(link), Arc::clone(&conn));
    let c3 = Arc::clone(&conn);
    let scheduler = Scheduler::new(rng);
    let started = shared.spawn(shared.thread_name("dl", link), move || {
        deliver(&l1, &c1, target_out, frames_rx, stop)
    }) && shared.spawn(shared.thread_name("rd", link), move || {
        read_frames(&l2, &c2, dialer_in, frames_tx, scheduler)
    }) && shared.spawn(shared.thread_name("rp", link), move || {
        relay_reply(&c3, target_in, dialer_out)
    });
    if !started {
        conn.close();
    }
}

/// Reads one frame (header included). `Ok(None)` on a clean end of stream.
fn read_frame(stream: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut frame = vec![0u8; 4 + len];
    frame[..4].copy_from_slice(&header);
    stream.read_exact(&mut frame[4..])?;
    Ok(Some(frame))
}

/// Blackhole reader: counts and discards frames until the connection ends.
fn swallow(link: &Link, conn: &Conn, mut dialer: TcpStream) {
    while let Ok(Some(_)) = read_frame(&mut dialer) {
        bump(&link.stats.frames_dropped);
    }
    conn.close();
}

/// Reads frames from the dialer, decides their fate and schedules them.
/// On a clean end of stream, returning drops `frames`, which lets the
/// delivery thread drain what is scheduled.
fn read_frames(
    link: &Link,
    conn: &Conn,
    mut dialer: TcpStream,
    frames: Sender<Timed>,
    mut scheduler: Scheduler,
) {
    let mut handshake = true;
    loop {
        let bytes = match read_frame(&mut dialer) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(_) => {
                conn.close();
                return;
            }
        };
        let now = Instant::now();
        match fate(&link.mode(), handshake, &mut scheduler.rng) {
            Fate::Drop => bump(&link.stats.frames_dropped),
            Fate::Close => {
                link.drop_connection(conn);
                return;
            }
            Fate::Deliver { delay, keep_order } => {
                let timed = scheduler.schedule(now, delay, keep_order, handshake, bytes);
                if timed.at > now {
                    bump(&link.stats.frames_delayed);
                }
                if frames.send(timed).is_err() {
                    return;
                }
            }
        }
        handshake = false;
    }
}

/// Writes scheduled frames to the target when they are due. Ends when the
/// connection is closed, or when the reader is done and all is delivered
/// (then the target's write side is shut down, passing the end of stream on).
fn deliver(
    link: &Link,
    conn: &Conn,
    mut target: TcpStream,
    mut frames: Receiver<Timed>,
    stop: Receiver<()>,
) {
    let mut heap = BinaryHeap::new();
    let mut reader_done = false;
    loop {
        if deliver_due(&mut heap, &mut target, &link.stats).is_err() {
            conn.close();
            return;
        }
        if reader_done && heap.is_empty() {
            let _ = target.shutdown(Shutdown::Write);
            return;
        }
        let wait = heap
            .peek()
            .map_or(IDLE_WAIT, |Reverse(next): &Reverse<Timed>| {
                next.at.saturating_duration_since(Instant::now())
            });
        select! {
            recv(frames) -> msg => match msg {
                Ok(timed) => heap.push(Reverse(timed)),
                Err(_) => {
                    reader_done = true;
                    frames = never();
                }
            },
            recv(stop) -> _ => return,
            default(wait) => {}
        }
    }
}

fn deliver_due(
    heap: &mut BinaryHeap<Reverse<Timed>>,
    target: &mut TcpStream,
    stats: &Counters,
) -> io::Result<()> {
    let now = Instant::now();
    while heap.peek().is_some_and(|Reverse(next)| next.at <= now) {
        if let Some(Reverse(next)) = heap.pop() {
            target.write_all(&next.bytes)?;
            bump(&stats.frames_forwarded);
        }
    }
    Ok(())
}

/// Copies the target's bytes (the handshake reply) back to the dialer.
fn relay_reply(conn: &Conn, mut target: TcpStream, mut dialer: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match target.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if dialer.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    conn.close();
}

/// What happens to one frame.
#[derive(Debug, PartialEq)]
enum Fate {
    /// Deliver after `delay`; `keep_order` forbids overtaking earlier frames.
    Deliver {
        delay: Duration,
        keep_order: bool,
    },
    Drop,
    /// Close the whole connection.
    Close,
}

impl Fate {
    fn in_order(delay: Duration) -> Fate {
        Fate::Deliver {
            delay,
            keep_order: true,
        }
    }

    fn any_order(delay: Duration) -> Fate {
        Fate::Deliver {
            delay,
            keep_order: false,
        }
    }
}

fn fate(mode: &LinkMode, handshake: bool, rng: &mut StdRng) -> Fate {
    match *mode {
        LinkMode::Pass => Fate::in_order(Duration::ZERO),
        LinkMode::Cut => Fate::Drop,
        LinkMode::Lossy {
            drop_frames,
            drop_connections,
        } => {
            if handshake {
                Fate::in_order(Duration::ZERO)
            } else if chance(rng, drop_connections) {
                Fate::Close
            } else if chance(rng, drop_frames) {
                Fate::Drop
            } else {
                Fate::in_order(Duration::ZERO)
            }
        }
        LinkMode::Slow { delay, jitter } => Fate::in_order(delay + below(rng, jitter)),
        LinkMode::Reorder {
            probability,
            hold_min,
            hold_max,
        } => {
            if !handshake && chance(rng, probability) {
                Fate::any_order(between(rng, hold_min, hold_max))
            } else {
                Fate::any_order(Duration::ZERO)
            }
        }
        LinkMode::Flaky {
            drop_frames,
            jitter,
            long_delay_probability,
            long_delay,
        } => {
            if !handshake && chance(rng, drop_frames) {
                return Fate::Drop;
            }
            let mut delay = below(rng, jitter);
            if !handshake && chance(rng, long_delay_probability) {
                delay += long_delay;
            }
            Fate::any_order(delay)
        }
    }
}

/// True with probability `p` (clamped to 0..=1; NaN counts as 0).
fn chance(rng: &mut StdRng, p: f64) -> bool {
    if p.is_nan() || p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.gen::<f64>() < p
    }
}

/// Uniform in `0..max` (zero when `max` is zero).
fn below(rng: &mut StdRng, max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(rng.gen_range(0..nanos))
    }
}

/// Uniform in `min..=max` (`min` when `max <= min`).
fn between(rng: &mut StdRng, min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span = u64::try_from((max - min).as_nanos()).unwrap_or(u64::MAX);
    min + Duration::from_nanos(rng.gen_range(0..=span))
}

/// Seeds a generator from several numbers (splitmix64 over each).
fn mix(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x9E37_79B9_7F4A_7C15, |hash, &part| splitmix64(hash ^ part))
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A frame waiting for its delivery time; ordered by (time, arrival).
struct Timed {
    at: Instant,
    seq: u64,
    bytes: Vec<u8>,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Timed {}

impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timed {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Turns fates into delivery times for one connection.
struct Scheduler {
    rng: StdRng,
    seq: u64,
    /// When the handshake goes out; no frame may go before it.
    handshake_at: Option<Instant>,
    /// The latest delivery time handed out so far.
    latest: Option<Instant>,
}

impl Scheduler {
    fn new(rng: StdRng) -> Scheduler {
        Scheduler {
            rng,
            seq: 0,
            handshake_at: None,
            latest: None,
        }
    }

    fn schedule(
        &mut self,
        now: Instant,
        delay: Duration,
        keep_order: bool,
        handshake: bool,
        bytes: Vec<u8>,
    ) -> Timed {
        let mut at = now + delay;
        if let Some(handshake_at) = self.handshake_at {
            at = at.max(handshake_at);
        }
        if let (true, Some(latest)) = (keep_order, self.latest) {
            at = at.max(latest);
        }
        if handshake {
            self.handshake_at = Some(at);
        }
        self.latest = Some(self.latest.map_or(at, |latest| latest.max(at)));
        self.seq += 1;
        Timed {
            at,
            seq: self.seq,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    fn send(stream: &mut TcpStream, payload: &[u8]) {
        stream.write_all(&frame(payload)).expect("send frame");
    }

    fn recv(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
        read_frame(stream).map(|frame| frame.map(|bytes| bytes[4..].to_vec()))
    }

    fn is_timeout(e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// A stand-in for a raftnode acceptor: answers each handshake `h` with
    /// `ok:h` and records the data frames with their arrival time.
    struct Target {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        acceptor: Option<JoinHandle<()>>,
        handshakes: Receiver<Vec<u8>>,
        frames: Receiver<(Vec<u8>, Instant)>,
    }

    impl Target {
        fn start() -> Target {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let (handshake_tx, handshakes) = unbounded();
            let (frame_tx, frames) = unbounded();
            let stopping = Arc::clone(&stop);
            let acceptor = thread::spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (h, f) = (handshake_tx.clone(), frame_tx.clone());
                            thread::spawn(move || serve(stream, h, f));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
            Target {
                addr,
                stop,
                acceptor: Some(acceptor),
                handshakes,
                frames,
            }
        }

        fn handshake(&self) -> Vec<u8> {
            self.handshakes.recv_timeout(WAIT).expect("a handshake")
        }

        fn data(&self) -> Vec<u8> {
            self.frames.recv_timeout(WAIT).expect("a data frame").0
        }

        fn data_frames(&self, count: usize) -> Vec<Vec<u8>> {
            (0..count).map(|_| self.data()).collect()
        }
    }

    impl Drop for Target {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(acceptor) = self.acceptor.take() {
                let _ = acceptor.join();
            }
        }
    }

    fn serve(
        mut stream: TcpStream,
        handshakes: Sender<Vec<u8>>,
        frames: Sender<(Vec<u8>, Instant)>,
    ) {
        let _ = stream.set_nonblocking(false);
        let Ok(Some(handshake)) = recv(&mut stream) else {
            return;
        };
        let reply = [b"ok:".as_slice(), &handshake].concat();
        let _ = handshakes.send(handshake);
        if stream.write_all(&frame(&reply)).is_err() {
            return;
        }
        while let Ok(Some(data)) = recv(&mut stream) {
            let _ = frames.send((data, Instant::now()));
        }
    }

    /// Connects and sends `handshake` without waiting for the reply.
    fn dial(addr: SocketAddr, handshake: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(addr).expect("connect to proxy");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        send(&mut stream, handshake);
        stream
    }

    /// Connects, sends handshake `hello` and checks the reply.
    fn dial_ok(addr: SocketAddr) -> TcpStream {
        let mut stream = dial(addr, b"hello");
        let reply = recv(&mut stream).expect("handshake reply").expect("no EOF");
        assert_eq!(reply, b"ok:hello");
        stream
    }

    fn assert_closed(stream: &mut TcpStream) {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => panic!("connection still open"),
                Err(_) => return,
            }
        }
    }

    fn numbered(count: u32) -> Vec<Vec<u8>> {
        (0..count).map(|i| i.to_be_bytes().to_vec()).collect()
    }

    fn number(payload: &[u8]) -> u32 {
        u32::from_be_bytes(payload.try_into().expect("4-byte payload"))
    }

    /// Sends `count` numbered frames, then waits until the proxy has dealt
    /// with all of them (and the handshake) and returns what arrived.
    fn send_numbered_and_collect(net: &Net, target: &Target, count: u32) -> Vec<u32> {
        let mut stream = dial_ok(net.link(1, 2).addr);
        for payload in numbered(count) {
            send(&mut stream, &payload);
        }
        let handled = u64::from(count) + 1;
        wait_until("every frame forwarded or dropped", || {
            let stats = net.stats();
            stats.frames_forwarded + stats.frames_dropped == handled
        });
        let forwarded = net.stats().frames_forwarded as usize - 1;
        let got: Vec<u32> = target
            .data_frames(forwarded)
            .iter()
            .map(|f| number(f))
            .collect();
        assert!(
            target.frames.try_recv().is_err(),
            "more frames than forwarded"
        );
        got
    }

    fn proxy_threads(net: &Net) -> usize {
        let prefix = format!("np{}-", net.shared.id);
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .filter_map(Result::ok)
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|name| name.starts_with(&prefix))
            })
            .count()
    }

    #[test]
    fn pass_forwards_frames_in_order_and_relays_the_reply() {
        let target = Target::start();
        let net = Net::new(1);
        let addr = net.add_link(1, 2, target.addr);
        let mut stream = dial_ok(addr);
        assert_eq!(target.handshake(), b"hello");
        for payload in numbered(100) {
            send(&mut stream, &payload);
        }
        assert_eq!(target.data_frames(100), numbered(100));
        wait_until("stats", || net.stats().frames_forwarded == 101);
        let stats = net.stats();
        assert_eq!((stats.connections, stats.frames_dropped), (1, 0));
        assert_eq!(stats, net.link_stats(1, 2));
    }

    #[test]
    fn cut_closes_existing_blackholes_new_and_heal_restores() {
        let target = Target::start();
        let net = Net::new(2);
        let addr = net.add_link(1, 2, target.addr);
        let mut old = dial_ok(addr);
        assert_eq!(target.handshake(), b"hello");

        net.cut(1, 2);
        assert_closed(&mut old);
        let mut blackholed = dial(addr, b"again");
        blackholed
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match recv(&mut blackholed) {
            Err(e) if is_timeout(&e) => {}
            other => panic!("expected the handshake reply to time out, got {other:?}"),
        }
        send(&mut blackholed, b"lost");
        wait_until("frames swallowed", || net.stats().frames_dropped == 2);
        assert!(target.handshakes.try_recv().is_err(), "handshake leaked");

        net.heal_link(1, 2);
        assert_closed(&mut blackholed);
        let mut fresh = dial_ok(addr);
        send(&mut fresh, b"after");
        assert_eq!(target.data(), b"after");
        assert_eq!(net.stats().connections_dropped, 2);
    }

    #[test]
    fn lossy_drop_all_drops_data_but_passes_the_handshake() {
        let target = Target::start();
        let net = Net::new(3);
        let addr = net.add_link(1, 2, target.addr);
        net.set(
            1,
            2,
            LinkMode::Lossy {
                drop_frames: 1.0,
                drop_connections: 0.0,
            },
        );
        let mut stream = dial_ok(addr);
        for payload in numbered(50) {
            send(&mut stream, &payload);
        }
        wait_until("frames dropped", || net.stats().frames_dropped == 50);
        net.heal_link(1, 2);
        send(&mut stream, b"marker");
        assert_eq!(target.data(), b"marker", "a data frame got through");
    }

    #[test]
    fn lossy_half_drops_roughly_half_and_keeps_order() {
        let target = Target::start();
        let net = Net::new(4);
        net.add_link(1, 2, target.addr);
        net.set(
            1,
            2,
            LinkMode::Lossy {
                drop_frames: 0.5,
                drop_connections: 0.0,
            },
        );
        let got = send_numbered_and_collect(&net, &target, 1000);
        assert!(
            (350..=650).contains(&got.len()),
            "{} of 1000 passed",
            got.len()
        );
        assert!(got.windows(2).all(|w| w[0] < w[1]), "order not kept");
    }

    #[test]
    fn lossy_connection_drop_closes_the_connection() {
        let target = Target::start();
        let net = Net::new(5);
        let addr = net.add_link(1, 2, target.addr);
        net.set(
            1,
            2,
            LinkMode::Lossy {
                drop_frames: 0.0,
                drop_connections: 1.0,
            },
        );
        let mut stream = dial_ok(addr);
        send(&mut stream, b"boom");
        assert_closed(&mut stream);
        wait_until("drop counted", || net.stats().connections_dropped == 1);
    }

    #[test]
    fn slow_delays_every_frame_by_at_least_delay_in_order() {
        let target = Target::start();
        let net = Net::new(6);
        let addr = net.add_link(1, 2, target.addr);
        let delay = Duration::from_millis(100);
        net.set(
            1,
            2,
            LinkMode::Slow {
                delay,
                jitter: Duration::from_millis(30),
            },
        );
        let dialed = Instant::now();
        let mut stream = dial_ok(addr);
        assert!(dialed.elapsed() >= delay, "handshake not delayed");
        let mut sent = Vec::new();
        for payload in numbered(10) {
            sent.push(Instant::now());
            send(&mut stream, &payload);
        }
        for (i, sent_at) in sent.iter().enumerate() {
            let (payload, arrived) = target.frames.recv_timeout(WAIT).expect("frame");
            assert_eq!(number(&payload), i as u32, "order not kept");
            assert!(arrived - *sent_at >= delay, "frame {i} not delayed");
        }
        assert_eq!(net.stats().frames_delayed, 11);
    }

    #[test]
    fn reorder_reorders_some_frames_and_loses_none() {
        let target = Target::start();
        let net = Net::new(7);
        net.add_link(1, 2, target.addr);
        net.set(
            1,
            2,
            LinkMode::Reorder {
                probability: 0.5,
                hold_min: Duration::from_millis(20),
                hold_max: Duration::from_millis(80),
            },
        );
        let got = send_numbered_and_collect(&net, &target, 200);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<u32>>(), "frames lost");
        assert_ne!(got, sorted, "nothing was reordered");
    }

    #[test]
    fn flaky_drops_some_and_delivers_the_rest() {
        let target = Target::start();
        let net = Net::new(8);
        net.add_link(1, 2, target.addr);
        net.set(
            1,
            2,
            LinkMode::Flaky {
                drop_frames: 0.2,
                jitter: Duration::from_millis(5),
                long_delay_probability: 0.1,
                long_delay: Duration::from_millis(50),
            },
        );
        let mut got = send_numbered_and_collect(&net, &target, 300);
        assert!(
            (150..=290).contains(&got.len()),
            "{} of 300 passed",
            got.len()
        );
        got.sort_unstable();
        got.dedup();
        assert_eq!(
            got.len() as u64 + 1,
            net.stats().frames_forwarded,
            "duplicates"
        );
    }

    #[test]
    fn partition_and_isolate_cut_the_right_links() {
        let target = Target::start();
        let net = Net::new(9);
        let pairs = [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)];
        for (from, to) in pairs {
            net.add_link(from, to, target.addr);
        }
        let cut_links = || -> Vec<(u64, u64)> {
            pairs
                .into_iter()
                .filter(|&(from, to)| net.mode(from, to) == LinkMode::Cut)
                .collect()
        };
        net.set(
            1,
            2,
            LinkMode::Slow {
                delay: Duration::ZERO,
                jitter: Duration::ZERO,
            },
        );
        net.partition(&[&[1, 2], &[3]]);
        assert_eq!(cut_links(), vec![(1, 3), (3, 1), (2, 3), (3, 2)]);
        assert_eq!(
            net.mode(1, 2),
            LinkMode::Pass,
            "partition heals within a group"
        );
        dial_ok(net.link(1, 2).addr);
        let mut blackholed = dial(net.link(1, 3).addr, b"hello");
        blackholed
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(recv(&mut blackholed).is_err_and(|e| is_timeout(&e)));

        net.heal();
        assert_eq!(cut_links(), vec![]);
        net.isolate(2);
        assert_eq!(cut_links(), vec![(1, 2), (2, 1), (2, 3), (3, 2)]);
    }

    #[test]
    fn set_target_redirects_new_connections_only() {
        let (first, second) = (Target::start(), Target::start());
        let net = Net::new(10);
        let addr = net.add_link(1, 2, first.addr);
        let mut old = dial_ok(addr);
        net.set_target(1, 2, second.addr);
        let mut new = dial_ok(addr);
        send(&mut old, b"old");
        send(&mut new, b"new");
        assert_eq!(first.data(), b"old");
        assert_eq!(second.data(), b"new");
    }

    #[test]
    fn unreachable_target_closes_the_accepted_connection() {
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let net = Net::new(11);
        let addr = net.add_link(1, 2, dead);
        let mut stream = dial(addr, b"hello");
        assert_closed(&mut stream);
    }

    #[test]
    fn oversized_frame_closes_the_connection() {
        let target = Target::start();
        let net = Net::new(12);
        let addr = net.add_link(1, 2, target.addr);
        let mut stream = dial_ok(addr);
        stream.write_all(&[0xff; 4]).unwrap();
        assert_closed(&mut stream);
    }

    #[test]
    fn shutdown_stops_every_thread_promptly() {
        let target = Target::start();
        let net = Net::new(13);
        let slow = net.add_link(1, 2, target.addr);
        let cut = net.add_link(1, 3, target.addr);
        let pass = net.add_link(2, 1, target.addr);
        net.set(
            1,
            2,
            LinkMode::Slow {
                delay: Duration::from_secs(30),
                jitter: Duration::ZERO,
            },
        );
        net.cut(1, 3);
        let mut streams = vec![dial(slow, b"hello"), dial(cut, b"hello"), dial_ok(pass)];
        // 3 acceptors, 3 + 3 threads for the forwarded connections, 1 blackhole
        wait_until("threads started", || proxy_threads(&net) == 10);
        assert_eq!(net.shared.live_threads.load(Ordering::SeqCst), 10);

        let started = Instant::now();
        net.shutdown();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "shutdown too slow"
        );
        assert_eq!(net.shared.live_threads.load(Ordering::SeqCst), 0);
        // A joined thread may linger in /proc for a moment.
        wait_until("threads gone", || proxy_threads(&net) == 0);
        for stream in &mut streams {
            assert_closed(stream);
        }
        net.shutdown();
        assert!(TcpStream::connect_timeout(&pass, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn dropping_the_net_shuts_it_down() {
        let target = Target::start();
        let net = Net::new(14);
        let addr = net.add_link(1, 2, target.addr);
        let mut stream = dial_ok(addr);
        let shared = Arc::clone(&net.shared);
        drop(net);
        assert_eq!(shared.live_threads.load(Ordering::SeqCst), 0);
        assert!(shared.threads.lock().is_empty());
        assert_closed(&mut stream);
    }

    #[test]
    fn fates_are_reproducible_for_a_seed() {
        let mode = LinkMode::Flaky {
            drop_frames: 0.3,
            jitter: Duration::from_millis(10),
            long_delay_probability: 0.2,
            long_delay: Duration::from_millis(100),
        };
        let run = |seed: u64| -> Vec<Fate> {
            let mut rng = StdRng::seed_from_u64(mix(&[seed, 1, 2, 1]));
            (0..100).map(|i| fate(&mode, i == 0, &mut rng)).collect()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        assert!(run(42).contains(&Fate::Drop));
    }

    #[test]
    fn no_frame_overtakes_the_handshake() {
        let mut scheduler = Scheduler::new(StdRng::seed_from_u64(0));
        let now = Instant::now();
        let handshake = scheduler.schedule(now, Duration::from_millis(50), false, true, vec![]);
        let data = scheduler.schedule(now, Duration::ZERO, false, false, vec![]);
        assert!(data > handshake);
        let held = scheduler.schedule(now, Duration::from_millis(500), false, false, vec![]);
        let passing = scheduler.schedule(now, Duration::ZERO, false, false, vec![]);
        assert!(passing < held, "a frame out of order may pass a held one");
        let ordered = scheduler.schedule(now, Duration::ZERO, true, false, vec![]);
        assert!(
            ordered > held,
            "an in-order frame waits for everything before it"
        );
    }
}
