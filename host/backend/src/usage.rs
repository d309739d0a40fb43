//! What a backend process uses, read from `/proc`: its resident memory (`VmRSS` in
//! `/proc/PID/status`) and the CPU time it has had (`utime + stime` in `/proc/PID/stat`).
//! Without `/proc` (not Linux) nothing is known and nothing is recycled for memory.

/// Clock ticks per second of `/proc/PID/stat`'s times: the kernel reports them in
/// `USER_HZ`, which is 100 on every architecture Linux exports it for.
const TICKS_PER_SECOND: f64 = 100.0;

/// One sample of a process's usage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub resident_bytes: u64,
    pub cpu_seconds: f64,
}

/// The usage of process `pid` now, or `None` when it is gone or `/proc` says nothing.
pub fn of(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Usage {
        resident_bytes: resident_bytes(&status)?,
        cpu_seconds: cpu_ticks(&stat)? as f64 / TICKS_PER_SECOND,
    })
}

/// `VmRSS:   1234 kB` from a `status` file, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

/// `utime + stime` from a `stat` line. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from its last `)`: utime and stime are the
/// 12th and 13th after it.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user.saturating_add(system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_status_in_bytes() {
        let status = "Name:\tnode\nVmPeak:\t  99 kB\nVmRSS:\t   2048 kB\nThreads:\t7\n";
        assert_eq!(resident_bytes(status), Some(2048 * 1024));
        assert_eq!(resident_bytes("Name:\tzombie\n"), None);
    }

    #[test]
    fn cpu_time_is_counted_after_the_command_name() {
        // A command name with a space and a parenthesis must not shift the fields.
        let stat =
            "42 (my (odd) srv) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 200";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("42 (short"), None);
    }

    #[test]
    fn this_process_has_usage() {
        let usage = of(std::process::id());
        assert!(
            usage.is_some_and(|usage| usage.resident_bytes > 0),
            "{usage:?}"
        );
    }
}
