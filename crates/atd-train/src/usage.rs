//! What this process has used so far (CPU time of all its threads, resident memory), read from
//! Linux's /proc, so that each epoch's log line says how many cores it kept busy and whether
//! memory grows; `None` where /proc is missing.

/// A reading of the process's usage at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// User plus system CPU seconds of every thread since the process started.
    pub cpu_seconds: f64,
    /// Resident memory now, in MiB.
    pub rss_mib: f64,
}

/// Clock ticks per second of /proc's times: USER_HZ, fixed at 100 on Linux's ABI.
const USER_HZ: f64 = 100.0;

impl Usage {
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Some(Self { cpu_seconds: cpu_seconds(&stat)?, rss_mib: rss_kib(&status)? / 1024.0 })
    }

    /// Cores kept busy on average from `earlier` to now, over `wall_seconds`.
    pub fn cores_since(&self, earlier: &Usage, wall_seconds: f64) -> f64 {
        (self.cpu_seconds - earlier.cpu_seconds) / wall_seconds.max(1e-9)
    }
}

/// utime + stime (fields 14 and 15) of /proc/self/stat, in seconds. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its closing parenthesis.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, field 3 (state) comes first: utime is field 14, i.e. index 11 here.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / USER_HZ)
}

/// The VmRSS line of /proc/self/status, in KiB.
fn rss_kib(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_lines_with_awkward_command_names() {
        let stat = "4242 (atd (x) y) R 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 3 0 100 0 0";
        assert_eq!(cpu_seconds(stat), Some(3.25));
        let status = "Name:\tatd\nVmPeak:\t  900 kB\nVmRSS:\t  204800 kB\nThreads:\t3\n";
        assert_eq!(rss_kib(status), Some(204800.0));
        assert_eq!(rss_kib("Name:\tatd\n"), None);
    }

    #[test]
    fn work_on_this_thread_shows_as_cpu_time() {
        let Some(before) = Usage::now() else { return };
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_secs_f64() < 0.3 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = Usage::now().expect("read once, readable again");
        let cores = after.cores_since(&before, start.elapsed().as_secs_f64());
        assert!(cores > 0.2, "a busy thread for 0.3 s counted as {cores} cores");
        assert!(after.rss_mib > 1.0);
    }
}
