//! The servers' CPU time, from `/proc/<pid>/stat`: user plus system time,
//! every thread of the process included, in clock ticks.

use std::fs;

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
}
