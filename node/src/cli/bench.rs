//! What the benchmark subcommands share: CPU clocks and the `key<TAB>value` files that
//! scripts/bench.sh reads their results from. The benchmark reports CPU per row rather
//! than rates alone, because on a shared machine the CPU a piece of work costs moves far
//! less than its wall time.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the CPU clock {path} (Linux only): {reason}")]
    CpuClock { path: &'static str, reason: String },
}

/// Linux reports a process's CPU in /proc/PID/stat in ticks of 1/100 s whatever the
/// kernel's timer frequency (USER_HZ is part of the ABI).
const USER_HZ: u64 = 100;

/// CPU time (user + system) of this process so far: every thread, those that have
/// exited included, librdkafka's too. In ticks of 10 ms, which a run of a second or more
/// makes fine enough.
pub fn process_cpu() -> Result<Duration, BenchError> {
    let path = "/proc/self/stat";
    let error = |reason: String| BenchError::CpuClock { path, reason };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let ticks = stat_cpu_ticks(&text).ok_or_else(|| error(format!("unexpected {text:?}")))?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// CPU time of the calling thread so far, in nanoseconds (the scheduler's own account).
pub fn thread_cpu() -> Result<Duration, BenchError> {
    let path = "/proc/thread-self/schedstat";
    let error = |reason: String| BenchError::CpuClock { path, reason };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| error(format!("unexpected {text:?}")))?;
    Ok(Duration::from_nanos(ns))
}

/// utime + stime of a /proc/PID/stat line. The command name, in parentheses, may hold
/// spaces and parentheses itself, so fields are counted after its last ')'.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Results as `key<TAB>value` lines, in the order they were added.
#[derive(Debug, Default)]
pub struct Stats {
    lines: Vec<(String, String)>,
}

impl Stats {
    pub fn add(&mut self, key: &str, value: impl ToString) -> &mut Stats {
        self.lines.push((key.to_string(), value.to_string()));
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Writes the lines to `path` when one is given.
    pub fn write(&self, path: Option<&Path>) -> Result<(), BenchError> {
        let Some(path) = path else {
            return Ok(());
        };
        let error = |source| BenchError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(error)?);
        for (k, v) in &self.lines {
            writeln!(file, "{k}\t{v}").map_err(error)?;
        }
        file.flush().map_err(error)
    }
}

/// The value at quantile `q` (0..=1) of sorted `values`, by the nearest rank: the smallest
/// value with at least a fraction `q` of the values at or below it.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile::<u32>(&[], 0.5), None);
    }

    #[test]
    fn stat_lines_give_user_plus_system_ticks() {
        let line = "4242 (rdk:broker (1)) S 1 4242 4242 0 -1 4194560 2915 0 0 0 \
                    120 35 0 0 20 0 9 0 1234 0 0";
        assert_eq!(stat_cpu_ticks(line), Some(155));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn cpu_clocks_move_forward() {
        let before = thread_cpu().expect("a Linux machine");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        assert!(thread_cpu().expect("clock") > before);
        process_cpu().expect("this process's CPU");
    }

    #[test]
    fn stats_are_written_as_tab_separated_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.tsv");
        let mut s = Stats::default();
        s.add("rows", 3).add("cpu_ns", 1500);
        assert_eq!(s.get("rows"), Some("3"));
        s.write(Some(&path)).expect("written");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "rows\t3\ncpu_ns\t1500\n"
        );
    }
}
