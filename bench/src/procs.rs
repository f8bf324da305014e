//! The simulator and the supervisor as child processes of the benchmark (so the figures are the
//! supervisor's own), and what `/proc` tells about them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Child {
    name: &'static str,
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Child {
    /// Starts this executable with `args` and `env`; stdout is read line by line (see
    /// [`Child::wait_for_line`]), stderr is inherited.
    pub fn spawn(
        name: &'static str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Child> {
        let exe = std::env::current_exe().context("locating the supervisor executable")?;
        let mut child = Command::new(exe)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        let stdout = child
            .stdout
            .take()
            .with_context(|| format!("the {name}'s stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Keep draining after the reader is gone so the child never blocks on its pipe.
                let _ = tx.send(line);
            }
        });
        Ok(Child { name, child, lines })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the first stdout line that `pick` accepts and returns what it extracted.
    pub fn wait_for_line<T>(
        &mut self,
        timeout: Duration,
        pick: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = pick(&line) {
                        return Ok(found);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "the {} printed nothing expected within {timeout:?}",
                        self.name
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    bail!("the {} exited early ({status:?})", self.name)
                }
            }
        }
    }

    /// Resident memory now and at its peak, MB.
    pub fn rss_mb(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .with_context(|| format!("reading /proc status of the {}", self.name))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .map(|kb| kb / 1024.0)
                .with_context(|| format!("{name} missing from /proc status"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// User + system CPU seconds used so far, all threads.
    pub fn cpu_s(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .with_context(|| format!("reading /proc stat of the {}", self.name))?;
        cpu_seconds(&stat, clock_ticks_per_s())
    }
}

impl Child {
    /// Asks the process to stop (SIGTERM) and waits up to 5 s without blocking the runtime;
    /// what is still running then is killed on drop.
    pub async fn stop(self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a pid we own; no memory is touched.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let mut child = self;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.child.try_wait() {
                return;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime of a `/proc/PID/stat` line, in seconds.
fn cpu_seconds(stat: &str, ticks_per_s: f64) -> anyhow::Result<f64> {
    // The command name may hold spaces and parentheses; the fields after the last ')' are fixed.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the full line, utime 14, stime 15.
    let tick = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .context("unexpected /proc stat format")
    };
    Ok((tick(11)? + tick(12)?) / ticks_per_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime() {
        let stat = "4242 (super visor) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(cpu_seconds(stat, 100.0).unwrap(), 3.0);
        assert!(cpu_seconds("garbage", 100.0).is_err());
    }
}
