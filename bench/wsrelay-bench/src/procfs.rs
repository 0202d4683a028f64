//! Reading a process's resident memory, CPU time and descriptors from Linux `/proc`
//! (proc(5)). Every reader returns `None` when the file is missing or unreadable (another OS,
//! a process that has gone, no permission).

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on Linux's x86 and ARM
/// ABIs).
const USER_HZ: f64 = 100.0;

/// `VmRSS` of `pid` in KiB (`/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU seconds `pid` has used, all threads included (`/proc/PID/stat`
/// fields 14 and 15).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11); // field 3 is index 0; utime is 14
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// CPU seconds the whole machine spent busy (every CPU: user, nice, system, irq, softirq,
/// steal; not idle or iowait), from the `cpu` line of `/proc/stat`.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum();
    Some(busy as f64 / USER_HZ)
}

/// Open descriptors of `pid` (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// This process's `(soft, hard)` open-file limit from `/proc/self/limits` (`None` means
/// unlimited or unknown).
pub fn nofile_limit() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut nums = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|v| v.parse::<u64>().ok());
    Some((nums.next()??, nums.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).is_some_and(|r| r > 0));
        assert!(cpu_seconds(pid).is_some());
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
        assert!(fd_count(pid).is_some_and(|n| n >= 3));
        let (soft, hard) = nofile_limit().unwrap();
        assert!(soft <= hard);
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
