//! `raftnode bench`: a load test a user can run on their own machine and
//! trust, against a local cluster it starts or one it is pointed at.
//!
//! What it measures, and why this way:
//!
//! * **A closed loop.** Each client is a thread with its own connection to
//!   the leader, sending a request (or a batch of `--pipeline` requests, in
//!   one write) and waiting for the replies before it sends the next. The
//!   offered load is therefore what the cluster can take: throughput and
//!   latency are read together, one row per client count, and more clients
//!   show where queueing starts. (An open loop at a fixed rate would
//!   measure something else: how the cluster copes with more than it can
//!   take.) The clients start on the leader; a `-MOVED` makes a client
//!   reconnect to the node it names, counted as a redirect, not an error.
//! * **A warm-up, then a measured window.** The first `--warmup` seconds
//!   are not counted (connections, the leader's first batches, caches);
//!   only replies that arrive within the `--secs` after it are. ops/s is
//!   those replies over the window's measured length.
//! * **Latency per request**, from the write of its batch to its reply,
//!   kept in HDR-style log-linear histograms (`histogram.rs`, within 1%
//!   from 1 µs to a minute), one per thread, merged at the end: p50, p90,
//!   p99 and the exact maximum.
//! * **Errors by kind**: error replies by their code (`TIMEOUT`,
//!   `TRYAGAIN`, `ERR` ...) and `io` for requests lost with a connection.
//! * **Floors**, measured first (`floors.rs`): the median `fdatasync` of a
//!   4 KiB append in the data dir's file system, and the median loopback
//!   round trip. One client's write can be no faster than about their sum
//!   (the leader's fsync, in parallel with a round trip to the followers
//!   and their fsyncs), so each row shows its p50 over that floor.
//! * **Server CPU per operation** (`cpu.rs`): user + system time of every
//!   server process, read from `/proc/<pid>/stat` before and after the
//!   window, summed, over the replies in it. It shows the cost of a request
//!   when throughput is bound by the CPU rather than the disk. The servers
//!   must be on this machine: the benchmark's own children, or (with
//!   `--addr`) members serving on loopback, whose pids INFO gives. The
//!   machine's total (`/proc/stat`) is read too: a row during which other
//!   processes took more than a tenth of the CPU says so.
//!
//! The benchmark shares the machine with the cluster it starts: on a small
//! machine its client threads take CPU from the servers, as any load
//! generator on the same machine would.

mod cluster;
mod conn;
mod cpu;
mod error;
mod floors;
mod histogram;
mod load;
mod prefill;
mod report;

use self::cluster::{server_pids, wait_for_leader, LocalCluster, ScratchDir};
use self::error::BenchError;
use self::floors::Floors;
use self::load::{Op, Phase, Running, Workload};
use self::report::Row;
use super::args::{check_addr, usage, Flags};
use super::error::CliError;
use rand::distributions::{Alphanumeric, DistString};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const BENCH_HELP: &str = "\
raftnode bench: load a cluster and report throughput, latency and cost

Usage:
  raftnode bench [--addr HOST:PORT]... [--clients N[,N...]] [--secs S] [--warmup S]
                 [--op set|get] [--value-size B] [--keys K] [--pipeline P]
                 [--nodes N] [--data-dir DIR] [--read-mode read-index|lease]
                 [--no-floors] [--json]

Without --addr it starts a cluster of --nodes `raftnode run` processes on
loopback (data in a new directory under --data-dir, removed afterwards),
waits for a leader, runs, and stops them. With --addr it loads that cluster,
starting on its leader and following MOVED.

Each client is a thread with its own connection and a closed loop: it sends
--pipeline requests in one write and waits for all their replies before
sending more. After --warmup seconds, replies are counted for --secs; each
client count given to --clients is one row of the table, in turn.

Before the load it measures two floors: the median fdatasync of a 4 KiB
append (in the data dir's file system) and the median loopback round trip.
A single client's write cannot beat their sum by much; each row shows its
p50 over it. Server CPU per operation is read from /proc when the servers
run on this machine (`-` otherwise).

Options:
  --addr HOST:PORT       a member of the cluster to load; repeat for more
                         [default: start a local cluster]
  --clients N[,N...]     connections (one thread each); a list runs each in turn
                         [default: 1,16,64]
  --secs S               measured seconds per row [default: 10]
  --warmup S             unmeasured seconds before each row [default: 2]
  --op set|get           SET (with a value) or GET; GET first writes every key
                         [default: set]
  --value-size B         value bytes (sizes: 100, 4kb, 1mb) [default: 100]
  --keys K               keys key:0 .. key:<K-1>, chosen uniformly [default: 100000]
  --pipeline P           requests in flight per connection [default: 1]
  --nodes N              local cluster: how many nodes [default: 3]
  --data-dir DIR         where the local cluster's data (and the fsync floor's
                         file) go [default: the system's temp dir]
  --read-mode MODE       local cluster: read-index or lease [default: read-index]
  --no-floors            skip measuring the floors
  --json                 also print each row as a JSON object, one a line
  -h, --help             this help

Progress goes to stderr once a second; results to stdout.
";

/// The most values any list or count may take: enough for any machine this
/// runs on, and a bound on the threads and memory it starts.
const MAX_CLIENTS: usize = 10_000;
const MAX_POINTS: usize = 32;
const MAX_PIPELINE: usize = 10_000;
const MAX_VALUE: usize = 1 << 20;
/// The most bytes one batch of pipelined requests may take.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// How often the run is checked (Ctrl-C, a node exiting), and the progress
/// line's period.
const TICK: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What to run, from the flags.
struct Options {
    addrs: Vec<String>,
    clients: Vec<usize>,
    secs: Duration,
    warmup: Duration,
    op: Op,
    value_size: usize,
    keys: u64,
    pipeline: usize,
    nodes: u64,
    data_dir: Option<PathBuf>,
    read_mode: String,
    floors: bool,
    json: bool,
}

/// `raftnode bench`.
pub(super) fn bench(args: &[String]) -> Result<ExitCode, CliError> {
    let Some(options) = parse(args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    match run(&options) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // Printed as `main` prints a CliError, with the same status.
        Err(e) => {
            eprintln!("raftnode: error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The options from the flags; `None` for --help.
fn parse(args: &[String]) -> Result<Option<Options>, CliError> {
    let flags = Flags::parse(
        args,
        &[
            "--addr",
            "--clients",
            "--secs",
            "--warmup",
            "--op",
            "--value-size",
            "--keys",
            "--pipeline",
            "--nodes",
            "--data-dir",
            "--read-mode",
        ],
        &["-h", "--help", "--no-floors", "--json"],
        false,
    )?;
    if flags.has("-h") || flags.has("--help") {
        print!("{BENCH_HELP}");
        return Ok(None);
    }
    let addrs: Vec<String> = flags.all("--addr").map(str::to_string).collect();
    for addr in &addrs {
        check_addr(addr, "--addr")?;
    }
    if !addrs.is_empty() {
        for local_only in ["--nodes", "--read-mode"] {
            if flags.get(local_only).is_some() {
                return Err(usage(format!(
                    "{local_only} is for the local cluster; with --addr the cluster is already running"
                )));
            }
        }
    }
    let clients = parse_clients(flags.get("--clients").unwrap_or("1,16,64"))?;
    let secs = seconds(&flags, "--secs", 10.0, false)?;
    let warmup = seconds(&flags, "--warmup", 2.0, true)?;
    let op = match flags.get("--op").unwrap_or("set") {
        "set" | "SET" => Op::Set,
        "get" | "GET" => Op::Get,
        other => return Err(usage(format!("--op expects set or get, got {other:?}"))),
    };
    let value_size = flags.size("--value-size", 100)?;
    if value_size > MAX_VALUE {
        return Err(usage(format!(
            "--value-size is at most 1mb, got {value_size}"
        )));
    }
    let keys: u64 = flags.number("--keys", 100_000)?;
    if !(1..=1_000_000_000).contains(&keys) {
        return Err(usage("--keys must be between 1 and 1000000000"));
    }
    let pipeline: usize = flags.number("--pipeline", 1)?;
    if !(1..=MAX_PIPELINE).contains(&pipeline) {
        return Err(usage(format!(
            "--pipeline must be between 1 and {MAX_PIPELINE}"
        )));
    }
    if pipeline.saturating_mul(value_size + 64) > MAX_BATCH_BYTES {
        return Err(usage(
            "--pipeline times --value-size is over 64mb: a batch must fit in memory",
        ));
    }
    let nodes: u64 = flags.number("--nodes", 3)?;
    if !(1..=15).contains(&nodes) {
        return Err(usage("--nodes must be between 1 and 15"));
    }
    let read_mode = flags.get("--read-mode").unwrap_or("read-index").to_string();
    if !matches!(read_mode.as_str(), "read-index" | "lease") {
        return Err(usage(format!(
            "--read-mode expects read-index or lease, got {read_mode:?}"
        )));
    }
    Ok(Some(Options {
        addrs,
        clients,
        secs,
        warmup,
        op,
        value_size,
        keys,
        pipeline,
        nodes,
        data_dir: flags.get("--data-dir").map(PathBuf::from),
        read_mode,
        floors: !flags.has("--no-floors"),
        json: flags.has("--json"),
    }))
}

/// `1,16,64`: each a positive count.
fn parse_clients(text: &str) -> Result<Vec<usize>, CliError> {
    let bad = || {
        usage(format!(
            "--clients expects counts from 1 to {MAX_CLIENTS} separated by commas, got {text:?}"
        ))
    };
    let counts = text
        .split(',')
        .map(|n| {
            n.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CLIENTS).contains(n))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    if counts.len() > MAX_POINTS {
        return Err(usage(format!(
            "--clients takes at most {MAX_POINTS} counts"
        )));
    }
    Ok(counts)
}

/// A duration in (possibly fractional) seconds, up to a day.
fn seconds(flags: &Flags, name: &str, default: f64, zero_ok: bool) -> Result<Duration, CliError> {
    let secs: f64 = flags.number(name, default)?;
    let low_ok = if zero_ok { secs >= 0.0 } else { secs > 0.0 };
    if !(low_ok && secs <= 86_400.0) {
        let least = if zero_ok { "0" } else { "more than 0" };
        return Err(usage(format!(
            "{name} must be {least} and at most 86400 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The whole benchmark: floors, cluster, a row per client count.
fn run(o: &Options) -> Result<(), BenchError> {
    catch_ctrl_c();
    let local_cluster = o.addrs.is_empty();
    // Declared before the cluster, so dropped after it: the nodes stop
    // before their data is removed.
    let scratch = match local_cluster || o.floors {
        true => {
            let parent = o.data_dir.clone().unwrap_or_else(std::env::temp_dir);
            Some(ScratchDir::create(&parent)?)
        }
        false => None,
    };
    let mut out = io::stdout();
    let floors = match (&scratch, o.floors) {
        (Some(dir), true) => {
            let floors = floors::measure(dir.path())?;
            let where_ = dir.path().display().to_string();
            print(&mut out, &report::floors(&floors, &where_));
            Some(floors)
        }
        _ => None,
    };
    let mut cluster = None;
    let addrs = match &scratch {
        Some(dir) if local_cluster => {
            let c = LocalCluster::start(dir.path(), o.nodes, &o.read_mode)?;
            let addrs = c.client_addrs();
            cluster = Some(c);
            addrs
        }
        _ => o.addrs.clone(),
    };
    let leader = match wait_for_leader(&addrs, &mut || watch(&mut cluster)) {
        Ok(leader) => leader,
        Err(BenchError::NoLeader { waited_secs, tails }) => {
            let tails = match &cluster {
                Some(c) => format!("{tails}{}", c.tails()),
                None => tails,
            };
            return Err(BenchError::NoLeader { waited_secs, tails });
        }
        Err(e) => return Err(e),
    };
    let pids = match &cluster {
        Some(c) => Some(c.pids()),
        None => server_pids(&leader.addr),
    };
    let mut described = match (&cluster, &scratch) {
        (Some(_), Some(dir)) => format!(
            "cluster: {} local node(s), data in {} (removed afterwards)",
            o.nodes,
            dir.path().display()
        ),
        _ => format!("cluster: {}", o.addrs.join(" ")),
    };
    described.push_str(&format!(
        "; leader {}, read mode {}\n",
        leader.addr, leader.read_mode
    ));
    match &pids {
        Some(pids) => {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            described.push_str(&format!("server pids: {}\n", list.join(" ")));
        }
        None => described.push_str(
            "server CPU: not measured (not every member is on this machine's loopback)\n",
        ),
    }
    described.push_str(&format!(
        "load: {}, {}-byte values, keys key:0..key:{}, pipeline {}, {:.1} s warm-up then {:.1} s per row\n",
        o.op.name(),
        o.value_size,
        o.keys - 1,
        o.pipeline,
        o.warmup.as_secs_f64(),
        o.secs.as_secs_f64()
    ));
    print(&mut out, &described);
    let value = Alphanumeric.sample_string(&mut rand::thread_rng(), o.value_size);
    let workload = Arc::new(Workload {
        op: o.op,
        keys: o.keys,
        value: value.into_bytes(),
        pipeline: o.pipeline,
    });
    if o.op == Op::Get {
        let start = Instant::now();
        eprintln!("filling {} keys for GET ...", o.keys);
        prefill::prefill(&leader.addr, o.keys, &workload.value)?;
        eprintln!("filled in {:.1} s", start.elapsed().as_secs_f64());
    }
    print(&mut out, &format!("\n{}\n", report::header()));
    let mut rows = Vec::new();
    for &clients in &o.clients {
        let point = Point {
            addr: &leader.addr,
            clients,
            workload: &workload,
            warmup: o.warmup,
            secs: o.secs,
            pids: pids.as_deref(),
            floors,
        };
        let row = point.run(&mut || watch(&mut cluster))?;
        print(&mut out, &format!("{}\n", report::line(&row)));
        rows.push(row);
    }
    // The floors again: if the machine was busier at one end of the run
    // than at the other, they differ, and the rows should be read with care.
    if let (Some(before), Some(dir)) = (floors, &scratch) {
        let after = floors::measure(dir.path())?;
        print(
            &mut out,
            &format!("\n{}", report::floors_after(&before, &after)),
        );
    }
    if let Some(note) = report::below_floor(&rows) {
        print(&mut out, &note);
    }
    if o.json {
        let lines: String = rows.iter().map(|r| report::json(r) + "\n").collect();
        print(&mut out, &format!("\n{lines}"));
    }
    Ok(())
}

/// Checked every tick: an error ends the run (Ctrl-C; a local node that
/// exited, with the tails of the nodes' logs).
fn watch(cluster: &mut Option<LocalCluster>) -> Result<(), BenchError> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        return Err(BenchError::Interrupted);
    }
    match cluster.as_mut() {
        Some(c) => c.check_running(),
        None => Ok(()),
    }
}

/// Writes to stdout now. A closed stdout (a pipe into `head`) is not worth
/// failing a benchmark over.
fn print(out: &mut io::Stdout, text: &str) {
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// One row of the table: a client count under the workload.
struct Point<'a> {
    addr: &'a str,
    clients: usize,
    workload: &'a Arc<Workload>,
    warmup: Duration,
    secs: Duration,
    pids: Option<&'a [u32]>,
    floors: Option<Floors>,
}

impl Point<'_> {
    /// Starts the clients, warms up, measures, stops them. `watch` runs
    /// every tick and ends the run with its error.
    fn run(&self, watch: &mut dyn FnMut() -> Result<(), BenchError>) -> Result<Row, BenchError> {
        let running = Running::start(self.addr, self.clients, self.workload)?;
        let label = format!("{} {} client(s)", self.workload.op.name(), self.clients);
        let mut progress = Progress::new(label);
        let measured = (|| {
            wait(&running, &mut progress, "warm-up", self.warmup, watch)?;
            running.set_phase(Phase::Measure);
            let before = cpu::sample(self.pids);
            let start = Instant::now();
            wait(&running, &mut progress, "run", self.secs, watch)?;
            running.set_phase(Phase::Stop);
            let secs = start.elapsed().as_secs_f64();
            Ok((secs, before, cpu::sample(self.pids)))
        })();
        progress.clear();
        let outcome = running.finish();
        let (secs, before, after) = measured?;
        let cpu = cpu::usage(&before, &after, outcome.latencies.count());
        Ok(Row {
            op: self.workload.op,
            clients: self.clients,
            pipeline: self.workload.pipeline,
            value_size: self.workload.value.len(),
            keys: self.workload.keys,
            secs,
            outcome,
            cpu,
            floors: self.floors,
        })
    }
}

/// Lets the clients run for `length`, checking every tick and reporting
/// progress every second.
fn wait(
    running: &Running,
    progress: &mut Progress,
    phase: &str,
    length: Duration,
    watch: &mut dyn FnMut() -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed();
        let Some(left) = length.checked_sub(elapsed).filter(|d| !d.is_zero()) else {
            return Ok(());
        };
        thread::sleep(left.min(TICK));
        watch()?;
        progress.tick(running, phase, start.elapsed(), length);
    }
}

/// The line on stderr saying how the run goes: rewritten in place on a
/// terminal, a line a second otherwise.
struct Progress {
    label: String,
    tty: bool,
    shown: bool,
    since: Instant,
    replies: u64,
}

impl Progress {
    fn new(label: String) -> Progress {
        Progress {
            label,
            tty: io::stderr().is_terminal(),
            shown: false,
            since: Instant::now(),
            replies: 0,
        }
    }

    fn tick(&mut self, running: &Running, phase: &str, elapsed: Duration, length: Duration) {
        let interval = self.since.elapsed();
        if interval < PROGRESS_EVERY {
            return;
        }
        let (replies, errors) = running.totals();
        let rate = (replies - self.replies) as f64 / interval.as_secs_f64();
        (self.since, self.replies) = (Instant::now(), replies);
        let line = format!(
            "{}: {phase} {:.1}/{:.0} s, {rate:.0} ops/s, {errors} errors",
            self.label,
            elapsed.as_secs_f64(),
            length.as_secs_f64()
        );
        let mut err = io::stderr();
        let _ = match self.tty {
            true => write!(err, "\r{line}\x1b[K"),
            false => writeln!(err, "{line}"),
        };
        let _ = err.flush();
        self.shown = true;
    }

    /// Clears the line on a terminal, so that the table is not interleaved.
    fn clear(&mut self) {
        if self.tty && self.shown {
            let _ = write!(io::stderr(), "\r\x1b[K");
        }
    }
}

/// Set by Ctrl-C: the run stops at its next tick and cleans up (the
/// nodes, the data dir) instead of dying in the middle.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Catches the first Ctrl-C (SIGINT); a second one kills as usual.
fn catch_ctrl_c() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; the struct is fully initialized before use.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}
