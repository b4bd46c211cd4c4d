//! What a server process has used so far, from `/proc/PID`: resident memory and CPU time.

use std::time::Duration;

use anyhow::{Context, Result};

/// `VmRSS` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// CPU time `pid` has used, user and system, over all its threads.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    cpu_time_of(&stat, rustix::param::clock_ticks_per_second())
}

/// The whole machine's CPU ticks so far, from the first line of `/proc/stat`: (busy, all),
/// busy being all but idle and I/O wait.
pub fn machine_ticks() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    machine_ticks_of(&stat)
}

fn machine_ticks_of(stat: &str) -> Result<(u64, u64)> {
    let line =
        stat.lines().next().filter(|line| line.starts_with("cpu ")).context("no cpu line")?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    anyhow::ensure!(ticks.len() >= 5, "short cpu line in /proc/stat");
    let all: u64 = ticks.iter().sum();
    Ok((all - ticks[3] - ticks[4], all))
}

/// `utime + stime` (fields 14 and 15, in clock ticks) of a `/proc/PID/stat` line. The second
/// field, the command name in parentheses, may itself hold spaces and parentheses, so fields
/// are counted from the last `)`, after which comes field 3.
fn cpu_time_of(stat: &str, ticks_per_second: u64) -> Result<Duration> {
    let (_, rest) = stat.rsplit_once(')').context("no command name in /proc/PID/stat")?;
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let mut ticks = || -> Result<u64> {
        fields.next().and_then(|f| f.parse().ok()).context("short /proc/PID/stat line")
    };
    let total = ticks()? + ticks()?;
    Ok(Duration::from_secs_f64(total as f64 / ticks_per_second.max(1) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line's fields, with a command name that would mislead a plain split.
    #[test]
    fn user_and_system_ticks_are_added() {
        let line = "4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 1517 0 0 0 250 130 0 0 \
                    20 0 3 0 1234 10000 500 18446744073709551615";
        let cpu = cpu_time_of(line, 100).expect("parsed");
        assert_eq!(cpu, Duration::from_millis(3_800));
        assert!(cpu_time_of("4242 (server) S 1", 100).is_err(), "a short line is an error");
    }

    /// Idle (field 4) and I/O wait (field 5) are not busy; everything else is.
    #[test]
    fn machine_ticks_leave_out_idle_and_waiting() {
        let stat = "cpu  100 5 50 800 45 0 0 0 0 0\ncpu0 50 2 25 400 20 0 0 0 0 0\n";
        assert_eq!(machine_ticks_of(stat).expect("parsed"), (155, 1000));
        assert!(machine_ticks_of("intr 1 2 3").is_err());
    }

    /// This process has used some CPU time, and reading it twice never goes back.
    #[test]
    fn reads_this_process() {
        let first = cpu_time(std::process::id()).expect("own stat");
        let second = cpu_time(std::process::id()).expect("own stat");
        assert!(second >= first);
        assert!(rss_kib(std::process::id()).expect("own status") > 0);
    }
}
