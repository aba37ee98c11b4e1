//! The results: the floors, a fixed-width table with a row per point, and
//! the same rows as JSON objects (one a line) for scripts.

use super::cpu::Usage;
use super::floors::{Floor, Floors};
use super::load::{Op, Outcome};
use crate::cli::json::quote;
use std::fmt::Write;

/// Above this share of the machine's CPU taken by other processes during a
/// row, the row says so.
const OTHERS_NOTICED: f64 = 0.10;

/// One point's results.
pub(crate) struct Row {
    pub(crate) op: Op,
    pub(crate) clients: usize,
    pub(crate) pipeline: usize,
    pub(crate) value_size: usize,
    pub(crate) keys: u64,
    /// The measured window's length, in seconds.
    pub(crate) secs: f64,
    pub(crate) outcome: Outcome,
    /// Server CPU time (user + system, summed over the servers) per reply,
    /// the same for this process (the load generator, which on a small
    /// machine competes with the servers for the CPU), and the share of the
    /// machine's CPU that other processes took.
    pub(crate) cpu: Usage,
    pub(crate) floors: Option<Floors>,
}

impl Row {
    fn ops(&self) -> u64 {
        self.outcome.latencies.count()
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops() as f64 / self.secs
    }

    fn ms(&self, q: f64) -> f64 {
        ms(self.outcome.latencies.quantile(q))
    }

    fn max_ms(&self) -> f64 {
        ms(self.outcome.latencies.max())
    }

    /// p50 over the single-client write floor (fsync + round trip).
    fn floor_ratio(&self) -> Option<f64> {
        let floor = self.floors?.write_floor();
        (floor > 0 && self.ops() > 0)
            .then(|| self.outcome.latencies.quantile(0.5) as f64 / floor as f64)
    }
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn floor_line(name: &str, f: &Floor) -> String {
    format!(
        "  {name:<26} median {:>7.3} ms   p99 {:>7.3} ms   ({} runs)\n",
        ms(f.p50),
        ms(f.p99),
        f.runs
    )
}

/// The floors, as printed above the table.
pub(crate) fn floors(f: &Floors, dir: &str) -> String {
    let mut out = format!("floors (measured before the load; fsync in {dir}):\n");
    out.push_str(&floor_line("4 KiB append + fdatasync", &f.fsync));
    out.push_str(&floor_line("loopback TCP round trip", &f.rtt));
    let _ = writeln!(
        out,
        "  single-client write floor ≈ fsync + RTT = {:.3} ms (p50/floor below is each row's p50 over it)",
        ms(f.write_floor())
    );
    if f.fsync.p50 < 20_000 {
        out.push_str(
            "  note: fdatasync took under 20 µs: this disk (or file system) does not wait for \
             stable storage, so the numbers below are not those of a durable setup\n",
        );
    }
    out
}

/// The floors measured again after the load, with a warning if the write
/// floor doubled or halved (then the machine's load changed during the run:
/// other work on it, or the disk busy with something else). The round trip
/// alone varies by more than that with how busy the CPUs are (a few µs
/// when the other core is free to take the wake-up at once, tens when it
/// is not), which matters little next to an fsync.
pub(crate) fn floors_after(before: &Floors, after: &Floors) -> String {
    let (a, b) = (before.write_floor(), after.write_floor());
    let mut out = format!(
        "floors after the load: fdatasync median {:.3} ms, round trip median {:.3} ms, \
         write floor {:.3} ms\n",
        ms(after.fsync.p50),
        ms(after.rtt.p50),
        ms(b)
    );
    if a.max(b) > 2 * a.min(b).max(1) {
        out.push_str(
            "  warning: the write floor changed during the run; something else is using this \
             machine's disk or CPU, so rerun before trusting the rows\n",
        );
    }
    out
}

/// A note under the table if a SET row's p50 is under the write floor,
/// which a durable write cannot be: either the floor was measured while
/// the disk was busier than during the load (a burst of other work; the
/// floors after the load tell), or the servers answer writes before they
/// are on disk.
pub(crate) fn below_floor(rows: &[Row]) -> Option<String> {
    let below = rows
        .iter()
        .any(|r| r.op == Op::Set && r.floor_ratio().is_some_and(|ratio| ratio < 1.0));
    below.then(|| {
        "note: a SET p50 is under the write floor, which a durable write cannot be: the floor \
         was measured on a busier disk than the load ran on (compare the floors after the \
         load; rerun), or the servers acknowledge writes before they are on disk\n"
            .to_string()
    })
}

/// The table's header line.
pub(crate) fn header() -> String {
    format!(
        "{:<4} {:>7} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>10} {:>9}",
        "op",
        "clients",
        "pipeline",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "cpu µs/op",
        "p50/floor"
    )
}

/// A row of the table, with a second line naming the errors by kind and
/// the redirects, if there were any.
pub(crate) fn line(row: &Row) -> String {
    let cpu = row
        .cpu
        .servers_us_per_op
        .map_or_else(|| "-".to_string(), |c| format!("{c:.1}"));
    let ratio = row
        .floor_ratio()
        .map_or_else(|| "-".to_string(), |r| format!("{r:.2}"));
    let mut out = format!(
        "{:<4} {:>7} {:>8} {:>10.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>7} {:>10} {:>9}",
        row.op.name(),
        row.clients,
        row.pipeline,
        row.ops_per_sec(),
        row.ms(0.5),
        row.ms(0.9),
        row.ms(0.99),
        row.max_ms(),
        row.outcome.error_count(),
        cpu,
        ratio
    );
    let mut notes: Vec<String> = row
        .outcome
        .errors
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if row.outcome.redirects > 0 {
        notes.push(format!("{} MOVED (followed)", row.outcome.redirects));
    }
    if !notes.is_empty() {
        let _ = write!(out, "\n     errors: {}", notes.join(", "));
    }
    if let Some(share) = row.cpu.others_share.filter(|&s| s > OTHERS_NOTICED) {
        let _ = write!(
            out,
            "\n     other processes took {:.0}% of this machine's CPU meanwhile: rerun on a quiet \
             machine to trust this row",
            share * 100.0
        );
    }
    out
}

/// A row as one JSON object. Numbers that could not be measured are `null`.
pub(crate) fn json(row: &Row) -> String {
    let num = |v: Option<f64>| v.map_or_else(|| "null".to_string(), |v| format!("{v:.3}"));
    let errors: Vec<String> = row
        .outcome
        .errors
        .iter()
        .map(|(kind, n)| format!("{}:{n}", quote(kind)))
        .collect();
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"op\":{},\"clients\":{},\"pipeline\":{},\"value_size\":{},\"keys\":{},\"secs\":{:.3},\
         \"ops\":{},\"ops_per_sec\":{:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\
         \"max_ms\":{:.3},\"errors\":{},\"errors_by_kind\":{{{}}},\"redirects\":{},\
         \"cpu_us_per_op\":{},\"client_cpu_us_per_op\":{},\"other_cpu_share\":{}",
        quote(row.op.name()),
        row.clients,
        row.pipeline,
        row.value_size,
        row.keys,
        row.secs,
        row.ops(),
        row.ops_per_sec(),
        row.ms(0.5),
        row.ms(0.9),
        row.ms(0.99),
        row.max_ms(),
        row.outcome.error_count(),
        errors.join(","),
        row.outcome.redirects,
        num(row.cpu.servers_us_per_op),
        num(row.cpu.own_us_per_op),
        num(row.cpu.others_share),
    );
    let floors = row.floors.as_ref();
    let _ = write!(
        out,
        ",\"fsync_p50_ms\":{},\"rtt_p50_ms\":{},\"write_floor_ms\":{},\"p50_over_floor\":{}}}",
        num(floors.map(|f| ms(f.fsync.p50))),
        num(floors.map(|f| ms(f.rtt.p50))),
        num(floors.map(|f| ms(f.write_floor()))),
        num(row.floor_ratio()),
    );
    out
}
