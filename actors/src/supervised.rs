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

#[cfg(test)]
mod tests {
    use actix::prelude::*;

    use super::*;

    /// A supervised actor that stops (and so is restarted) on request.
    struct Flaky {
        restarts: RestartTracker,
    }

    impl Actor for Flaky {
        type Context = Context<Self>;
    }

    impl actix::Supervised for Flaky {
        fn restarting(&mut self, _ctx: &mut Context<Self>) {
            self.restarts.on_restart("Flaky");
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Crash;

    impl Handler<Crash> for Flaky {
        type Result = ();
        fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    #[derive(Message)]
    #[rtype(result = "(u64, bool)")]
    struct Figures;

    impl Handler<Figures> for Flaky {
        type Result = MessageResult<Figures>;
        fn handle(&mut self, _: Figures, _: &mut Context<Self>) -> Self::Result {
            MessageResult((self.restarts.restarts(), self.restarts.faulted()))
        }
    }

    #[actix_rt::test]
    async fn supervised_restarts_keep_state_and_a_crash_loop_faults() {
        let addr = actix::Supervisor::start(|_| Flaky {
            restarts: RestartTracker::new(5, Duration::from_secs(60)),
        });
        for expected in 1..=5u64 {
            addr.send(Crash).await.unwrap();
            // The restart is immediate; the tracker lives in `self`, so it survives it.
            assert_eq!(addr.send(Figures).await.unwrap(), (expected, false));
        }
        addr.send(Crash).await.unwrap();
        assert_eq!(
            addr.send(Figures).await.unwrap(),
            (6, true),
            "the sixth restart within the window marks the actor Faulted"
        );
    }
}
