//! CPU time from `/proc`: the servers' and the benchmark's own (user plus
//! system time, every thread of the process included, from
//! `/proc/<pid>/stat`), and the whole machine's (`/proc/stat`), all in clock
//! ticks. The difference says how much CPU other processes took during a
//! window: on a small machine they slow the cluster as much as the load does.

use std::fs;

/// CPU time used so far; `None` where it cannot be read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    servers: Option<u64>,
    own: Option<u64>,
    /// The machine's busy and total ticks, over all CPUs.
    machine: Option<(u64, u64)>,
}

/// Takes a sample; `servers` are the servers' pids, if known.
pub(crate) fn sample(servers: Option<&[u32]>) -> Sample {
    Sample {
        servers: servers.and_then(ticks),
        own: ticks(&[std::process::id()]),
        machine: fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(parse_machine),
    }
}

/// What a window between two samples cost.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    /// The servers' CPU time per operation, in µs.
    pub(crate) servers_us_per_op: Option<f64>,
    /// The benchmark's own, per operation, in µs.
    pub(crate) own_us_per_op: Option<f64>,
    /// The share (0 to 1) of the machine's CPU time that went to neither.
    pub(crate) others_share: Option<f64>,
}

pub(crate) fn usage(before: &Sample, after: &Sample, ops: u64) -> Usage {
    let delta = |b: Option<u64>, a: Option<u64>| Some(a?.saturating_sub(b?));
    let (servers, own) = (
        delta(before.servers, after.servers),
        delta(before.own, after.own),
    );
    let per_op = |ticks: Option<u64>| -> Option<f64> {
        let (ticks, hz) = (ticks?, ticks_per_second()?);
        (ops > 0).then(|| ticks as f64 * 1e6 / hz as f64 / ops as f64)
    };
    let others_share = (|| {
        let ((busy0, total0), (busy1, total1)) = (before.machine?, after.machine?);
        let total = total1.saturating_sub(total0);
        let others = busy1
            .saturating_sub(busy0)
            .saturating_sub(servers?)
            .saturating_sub(own?);
        (total > 0).then(|| others as f64 / total as f64)
    })();
    Usage {
        servers_us_per_op: per_op(servers),
        own_us_per_op: per_op(own),
        others_share,
    }
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of `/proc`'s times.
pub(crate) fn ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0)
}

/// The CPU time used so far by all of `pids` together, in clock ticks;
/// `None` if any one cannot be read (not on this machine, or no `/proc`).
pub(crate) fn ticks(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|&pid| process_ticks(pid)).sum()
}

/// Busy and total ticks from `/proc/stat`'s first line, `cpu  user nice
/// system idle iowait irq softirq steal ...`: busy is everything but idle
/// and iowait (steal included: another machine's work on this one's CPUs).
fn parse_machine(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = fields[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

fn process_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// utime + stime from a `/proc/<pid>/stat` line: fields 14 and 15, counted
/// from the pid, after the command name in parentheses (which may hold
/// spaces and parentheses itself, so the fields start after the last `)`).
fn parse_stat(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (the state).
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time() {
        let line = "4242 (raft node) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    150 25 0 0 20 0 12 0 1000 123456 789 18446744073709551615";
        assert_eq!(parse_stat(line), Some(175));
        assert_eq!(parse_stat("garbage"), None);
        let own = ticks(&[std::process::id()]);
        assert!(own.is_some(), "cannot read this process's own stat");
        assert!(ticks_per_second().is_some());
    }

    #[test]
    fn the_machine_is_busy_except_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 10 0 0\ncpu0 50 2 25 500 10 1 1 5 0 0\n";
        assert_eq!(parse_machine(stat), Some((170, 1190)));
        assert_eq!(parse_machine("cpu  1 2\n"), None);
        let before = Sample {
            servers: Some(100),
            own: Some(10),
            machine: Some((1000, 4000)),
        };
        let after = Sample {
            servers: Some(300),
            own: Some(30),
            machine: Some((1400, 5000)),
        };
        let u = usage(&before, &after, 1000);
        // 400 busy ticks, 200 the servers', 20 our own: 180 of 1000 others'.
        assert_eq!(u.others_share, Some(0.18));
        assert!(u.servers_us_per_op.is_some_and(|us| us > 0.0));
    }
}
