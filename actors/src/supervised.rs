//! Restart bookkeeping shared by supervised actors: counts restarts and trips the crash-loop
//! breaker (ARCHITECTURE §4) so a failing actor shows Faulted instead of spinning.

use std::time::{Duration, Instant};

use crate::domain::supervision::CrashLoop;

#[derive(Debug, Clone)]
pub struct RestartTracker {
    crash: CrashLoop,
    faulted: bool,
}

impl RestartTracker {
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        Self {
            crash: CrashLoop::new(max_restarts, window),
            faulted: false,
        }
    }

    /// Records a restart; returns true when the actor is (now) Faulted.
    pub fn on_restart(&mut self, name: &str) -> bool {
        if self.crash.record_restart(Instant::now()) && !self.faulted {
            self.faulted = true;
            tracing::error!(
                actor = name,
                restarts = self.crash.restarts_total(),
                "crash loop: more than {} restarts within {:?}; actor marked Faulted",
                self.crash.max_restarts(),
                self.crash.window()
            );
        } else {
            tracing::warn!(
                actor = name,
                restarts = self.crash.restarts_total(),
                "actor restarted"
            );
        }
        self.faulted
    }

    pub fn faulted(&self) -> bool {
        self.faulted
    }

    pub fn restarts(&self) -> u64 {
        self.crash.restarts_total()
    }
}
