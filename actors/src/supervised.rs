//! Supervision shared by the long-lived actors and the risk actors: [`start`] runs an actor
//! under a supervisor that restarts it after it stops *or panics*, and [`RestartTracker`]
//! counts restarts and trips the crash-loop breaker so a failing actor shows Faulted instead
//! of spinning.
//!
//! actix's own `Supervisor` restarts an actor that stops, but a panic in a handler unwinds
//! through it and the actor is gone for good, its address dead. Here the panic is caught at the
//! actor's boundary (the poll of its context): the message or future that panicked is dropped,
//! and the actor is restarted through `Supervised::restarting` like after a stop, with the same
//! address and the messages still queued in its mailbox. Each actor's `restarting` drops the
//! state a half-finished handler may have left inconsistent and rebuilds it (from the database
//! where it lives there), see docs/liveness.md.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::domain::supervision::CrashLoop;

/// Starts `A` on the current arbiter under a supervisor that restarts it after it stops (as
/// `actix::Supervisor` does) and after a panic in any of its handlers, futures or lifecycle
/// methods. The restart keeps the address and the mailbox; `Supervised::restarting` runs first.
pub fn start<A, F>(f: F) -> Addr<A>
where
    A: Supervised + Actor<Context = Context<A>> + Unpin,
    F: FnOnce(&mut Context<A>) -> A,
{
    let mut ctx = Context::new();
    let act = f(&mut ctx);
    let addr = ctx.address();
    let mut fut = ctx.into_future(act);
    let name = short_name::<A>();
    actix_rt::spawn(std::future::poll_fn(move |cx| {
        loop {
            match panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut fut).poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                // Stopped: restarted while someone holds its address, as actix does.
                Ok(Poll::Ready(())) => {
                    if !fut.restart() {
                        return Poll::Ready(());
                    }
                }
                Err(payload) => {
                    tracing::error!(
                        actor = name,
                        panic = %panic_message(payload.as_ref()),
                        "actor panicked; restarting it"
                    );
                    if !fut.restart() {
                        return Poll::Ready(());
                    }
                    // Let the rest of the arbiter run before the restarted actor does, so an
                    // actor that panics at every start cannot monopolise the thread.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    }));
    addr
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// The type's name without its module path.
fn short_name<A>() -> &'static str {
    let full = std::any::type_name::<A>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Makes the receiving actor panic in its handler, as a bug would. No route, command or
/// setting sends it: only code running in the same process can, which is how the integration
/// tests prove that a panicking actor comes back (docs/liveness.md).
#[doc(hidden)]
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// The crash-loop limit every supervised actor is started with (docs/ARCHITECTURE.md §7.1):
/// more than `max_restarts` restarts within a sliding `window` mark the actor Faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervision {
    pub max_restarts: u32,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct RestartTracker {
    crash: CrashLoop,
    faulted: bool,
}

impl RestartTracker {
    pub fn new(supervision: Supervision) -> Self {
        Self {
            crash: CrashLoop::new(supervision.max_restarts, supervision.window),
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

    const SUPERVISION: Supervision = Supervision {
        max_restarts: 5,
        window: Duration::from_secs(60),
    };

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

    impl Handler<InjectPanic> for Flaky {
        type Result = ();
        fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
            panic!("injected");
        }
    }

    #[actix_rt::test]
    async fn a_panicking_handler_restarts_the_actor_behind_the_same_address() {
        let addr = start(|_| Flaky {
            restarts: RestartTracker::new(SUPERVISION),
        });
        for expected in 1..=5u64 {
            // The panic drops the message: its sender hears that the actor did not answer.
            assert!(addr.send(InjectPanic).await.is_err());
            assert_eq!(addr.send(Figures).await.unwrap(), (expected, false));
        }
        // Messages queued behind the panicking one are still handled after the restart.
        addr.do_send(InjectPanic);
        let queued = addr.send(Figures);
        assert_eq!(
            queued.await.unwrap(),
            (6, true),
            "the sixth restart within the window marks the actor Faulted"
        );
        assert!(addr.connected());
    }

    #[actix_rt::test]
    async fn a_panic_under_actix_supervisor_kills_the_actor() {
        // What `start` exists for: actix's own supervisor does not survive a panic.
        let addr = actix::Supervisor::start(|_| Flaky {
            restarts: RestartTracker::new(SUPERVISION),
        });
        assert!(addr.send(InjectPanic).await.is_err());
        assert!(addr.send(Figures).await.is_err());
    }

    #[actix_rt::test]
    async fn supervised_restarts_keep_state_and_a_crash_loop_faults() {
        let addr = actix::Supervisor::start(|_| Flaky {
            restarts: RestartTracker::new(SUPERVISION),
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
