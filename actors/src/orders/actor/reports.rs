//! Where leg outcomes go: each report to the risk actor of the leg's run (attached with
//! `AttachRun`), then, for a closed leg, to the leg book (`AttachBook`). A report whose run has
//! no connected listener is kept until one attaches, so that none is lost silently.

use std::collections::{HashMap, VecDeque};

use actix::WeakRecipient;

use super::OrderGatewayActor;
use crate::orders::{AttachRun, ExitReport};

/// Reports kept per strategy at most; when full, the oldest is dropped.
const KEPT_MAX: usize = 100;

/// The strategy and run a report is about.
fn run_of(report: &ExitReport) -> (i32, i32) {
    match report {
        ExitReport::LegExited {
            strategy_id,
            run_id,
            ..
        }
        | ExitReport::LegFailed {
            strategy_id,
            run_id,
            ..
        } => (*strategy_id, *run_id),
    }
}

/// Reports kept for runs without a listener, per strategy, oldest first.
#[derive(Debug, Default)]
pub(super) struct ReportQueue {
    kept: HashMap<i32, VecDeque<ExitReport>>,
}

/// What [`ReportQueue::take`] hands back.
#[derive(Debug, Default)]
pub(super) struct Taken {
    /// The run's reports, oldest first, to deliver.
    pub(super) reports: Vec<ExitReport>,
    /// Reports of older runs of the strategy, dropped.
    pub(super) stale: Vec<ExitReport>,
}

impl ReportQueue {
    /// Keeps a report until its run's listener attaches. When the strategy already has
    /// [`KEPT_MAX`] kept, the oldest is dropped and returned.
    pub(super) fn keep(&mut self, report: ExitReport) -> Option<ExitReport> {
        let (strategy_id, _) = run_of(&report);
        let kept = self.kept.entry(strategy_id).or_default();
        let dropped = if kept.len() >= KEPT_MAX {
            kept.pop_front()
        } else {
            None
        };
        kept.push_back(report);
        dropped
    }

    /// Takes the kept reports of one run of a strategy, oldest first, and drops those of its
    /// older runs. Reports of newer runs stay.
    pub(super) fn take(&mut self, strategy_id: i32, run_id: i32) -> Taken {
        let mut taken = Taken::default();
        let Some(kept) = self.kept.remove(&strategy_id) else {
            return taken;
        };
        let mut rest = VecDeque::new();
        for report in kept {
            let (_, run) = run_of(&report);
            if run == run_id {
                taken.reports.push(report);
            } else if run < run_id {
                taken.stale.push(report);
            } else {
                rest.push_back(report);
            }
        }
        if !rest.is_empty() {
            self.kept.insert(strategy_id, rest);
        }
        taken
    }

    /// Reports kept, of every strategy.
    pub(super) fn len(&self) -> usize {
        self.kept.values().map(VecDeque::len).sum()
    }
}

impl OrderGatewayActor {
    /// Reports a leg's outcome: first to its run's listener (kept when there is none), then,
    /// when the leg is closed, to the leg book. In this order, the risk actor hears of a closed
    /// leg before anything the leg book does about it can reach it.
    pub(super) fn report(&mut self, report: ExitReport) {
        let key = run_of(&report);
        let for_book = matches!(report, ExitReport::LegExited { .. }).then(|| report.clone());
        let listener = self.runs.get(&key).map(WeakRecipient::upgrade);
        match listener {
            Some(Some(listener)) if listener.connected() => listener.do_send(report),
            found => {
                if found.is_some() {
                    tracing::warn!(
                        strategy_id = key.0,
                        run_id = key.1,
                        "the run's listener is gone; its reports are kept until it attaches again"
                    );
                    self.runs.remove(&key);
                }
                self.keep(report);
            }
        }
        let Some(report) = for_book else {
            return;
        };
        match &self.book {
            Some(book) if book.connected() => book.do_send(report),
            Some(_) => {
                tracing::warn!("the leg book's listener is gone; closed legs are not sent to it");
                self.book = None;
            }
            None => {}
        }
    }

    fn keep(&mut self, report: ExitReport) {
        let Some(dropped) = self.kept.keep(report) else {
            return;
        };
        self.reports_dropped += 1;
        let (strategy_id, run_id) = run_of(&dropped);
        tracing::error!(
            strategy_id,
            run_id,
            report = ?dropped,
            dropped_total = self.reports_dropped,
            "too many leg reports kept for a strategy without a listener; the oldest is dropped"
        );
    }

    /// A run's listener attached: the reports kept for the run go to it, oldest first; those
    /// kept for older runs of the strategy are dropped.
    pub(super) fn attach_run(&mut self, msg: AttachRun) {
        let AttachRun {
            strategy_id,
            run_id,
            listener,
        } = msg;
        self.runs
            .retain(|_, l| l.upgrade().is_some_and(|l| l.connected()));
        if !listener.connected() {
            return;
        }
        let taken = self.kept.take(strategy_id, run_id);
        if !taken.stale.is_empty() {
            tracing::debug!(
                strategy_id,
                run_id,
                dropped = taken.stale.len(),
                "reports kept for older runs of the strategy are dropped"
            );
        }
        if !taken.reports.is_empty() {
            tracing::info!(
                strategy_id,
                run_id,
                reports = taken.reports.len(),
                "delivering the reports kept for the run"
            );
        }
        for report in taken.reports {
            listener.do_send(report);
        }
        // Held weakly: a run's risk actor stops when the run is over, and a listener kept here
        // must not keep it alive (supervision restarts an actor whose address is still held).
        self.runs
            .insert((strategy_id, run_id), listener.downgrade());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(execution_id: i32, strategy_id: i32, run_id: i32) -> ExitReport {
        ExitReport::LegFailed {
            execution_id,
            strategy_id,
            run_id,
            message: String::new(),
        }
    }

    fn exited(execution_id: i32, strategy_id: i32, run_id: i32) -> ExitReport {
        ExitReport::LegExited {
            execution_id,
            strategy_id,
            run_id,
            exit_price: None,
            realized_pnl: None,
            filled: 1,
            unheld: 0,
            mismatch: None,
        }
    }

    fn ids(reports: &[ExitReport]) -> Vec<i32> {
        reports
            .iter()
            .map(|r| match r {
                ExitReport::LegExited { execution_id, .. }
                | ExitReport::LegFailed { execution_id, .. } => *execution_id,
            })
            .collect()
    }

    #[test]
    fn a_runs_reports_are_delivered_oldest_first() {
        let mut q = ReportQueue::default();
        assert!(q.keep(exited(1, 7, 3)).is_none());
        assert!(q.keep(failed(2, 7, 3)).is_none());
        assert!(q.keep(exited(3, 8, 1)).is_none());
        assert!(q.keep(exited(4, 7, 3)).is_none());
        assert_eq!(q.len(), 4);
        let taken = q.take(7, 3);
        assert_eq!(ids(&taken.reports), vec![1, 2, 4]);
        assert!(taken.stale.is_empty());
        assert_eq!(q.len(), 1);
        // Taken once: nothing more for the run.
        assert!(q.take(7, 3).reports.is_empty());
        assert_eq!(ids(&q.take(8, 1).reports), vec![3]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_full_strategy_drops_its_oldest_report() {
        let mut q = ReportQueue::default();
        for id in 0..KEPT_MAX as i32 {
            assert!(q.keep(failed(id, 7, 1)).is_none());
        }
        // Another strategy has room of its own.
        assert!(q.keep(failed(1000, 8, 1)).is_none());
        let dropped = q.keep(failed(100, 7, 1));
        assert_eq!(ids(&dropped.into_iter().collect::<Vec<_>>()), vec![0]);
        assert_eq!(q.len(), KEPT_MAX + 1);
        let taken = q.take(7, 1);
        assert_eq!(taken.reports.len(), KEPT_MAX);
        assert_eq!(ids(&taken.reports[..1]), vec![1]);
        assert_eq!(ids(&taken.reports[KEPT_MAX - 1..]), vec![100]);
    }

    #[test]
    fn a_newer_run_drops_the_older_runs_reports() {
        let mut q = ReportQueue::default();
        q.keep(failed(1, 7, 1));
        q.keep(exited(2, 7, 2));
        q.keep(exited(3, 7, 4));
        q.keep(failed(4, 7, 3));
        q.keep(failed(5, 9, 1));
        let taken = q.take(7, 3);
        assert_eq!(ids(&taken.reports), vec![4]);
        assert_eq!(ids(&taken.stale), vec![1, 2]);
        // A newer run's report stays for its own listener, as does another strategy's.
        assert_eq!(q.len(), 2);
        assert_eq!(ids(&q.take(7, 4).reports), vec![3]);
        assert_eq!(ids(&q.take(9, 1).reports), vec![5]);
    }

    // The gateway's routing, without its lanes: listeners are recorder actors.

    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use actix::prelude::*;

    use crate::orders::GatewaySettings;
    use crate::supervised::Supervision;

    struct Recorder(Rc<RefCell<Vec<i32>>>);

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl Handler<ExitReport> for Recorder {
        type Result = ();

        fn handle(&mut self, msg: ExitReport, _ctx: &mut Context<Self>) {
            self.0.borrow_mut().extend(ids(&[msg]));
        }
    }

    /// Answers once every report sent before it was handled.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Flush;

    impl Handler<Flush> for Recorder {
        type Result = ();

        fn handle(&mut self, _: Flush, _ctx: &mut Context<Self>) {}
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Stop;

    impl Handler<Stop> for Recorder {
        type Result = ();

        fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    fn recorder() -> (Addr<Recorder>, Rc<RefCell<Vec<i32>>>) {
        let seen = Rc::new(RefCell::new(Vec::new()));
        (Recorder(seen.clone()).start(), seen)
    }

    fn gateway() -> OrderGatewayActor {
        let ms = Duration::from_millis;
        OrderGatewayActor::new(
            Default::default(),
            GatewaySettings {
                max_exit_attempts: 3,
                retry_initial: ms(100),
                retry_max: ms(1000),
                order_rate_per_s: 10,
                rest_timeout: ms(1000),
                settle: ms(1000),
                poll_initial: ms(100),
                poll_max: ms(1000),
                working_timeout: ms(1000),
                event_wait: ms(100),
                positions_max_age: ms(1000),
                supervision: Supervision {
                    max_restarts: 3,
                    window: ms(1000),
                },
            },
        )
    }

    fn attach(gw: &mut OrderGatewayActor, strategy_id: i32, run_id: i32, to: &Addr<Recorder>) {
        gw.attach_run(AttachRun {
            strategy_id,
            run_id,
            listener: to.clone().recipient(),
        });
    }

    #[actix_rt::test]
    async fn the_run_hears_every_outcome_and_the_book_only_closed_legs() {
        let mut gw = gateway();
        let ((run, run_seen), (other, other_seen), (book, book_seen)) =
            (recorder(), recorder(), recorder());
        gw.book = Some(book.clone().recipient());
        attach(&mut gw, 7, 3, &run);
        attach(&mut gw, 8, 1, &other);
        gw.report(exited(1, 7, 3));
        gw.report(failed(2, 7, 3));
        gw.report(exited(3, 8, 1));
        for addr in [&run, &other, &book] {
            let _ = addr.send(Flush).await;
        }
        assert_eq!(*run_seen.borrow(), vec![1, 2]);
        assert_eq!(*other_seen.borrow(), vec![3]);
        assert_eq!(*book_seen.borrow(), vec![1, 3]);
        assert_eq!(gw.kept.len(), 0);
    }

    #[actix_rt::test]
    async fn reports_wait_for_their_run_and_a_gone_listener_is_removed() {
        let mut gw = gateway();
        let (book, book_seen) = recorder();
        gw.book = Some(book.clone().recipient());
        gw.report(exited(1, 7, 2));
        gw.report(exited(2, 7, 3));
        gw.report(failed(3, 7, 3));
        assert_eq!(gw.kept.len(), 3);
        assert_eq!(gw.status().reports_waiting, 3);
        // The leg book does not wait for the run.
        let _ = book.send(Flush).await;
        assert_eq!(*book_seen.borrow(), vec![1, 2]);

        let (run, run_seen) = recorder();
        attach(&mut gw, 7, 3, &run);
        gw.report(exited(4, 7, 3));
        let _ = run.send(Flush).await;
        // Kept ones first, in order; the older run's report is dropped.
        assert_eq!(*run_seen.borrow(), vec![2, 3, 4]);
        assert_eq!(gw.kept.len(), 0);

        let _ = run.send(Stop).await;
        for _ in 0..100 {
            if !run.connected() {
                break;
            }
            actix_rt::task::yield_now().await;
        }
        assert!(!run.connected());
        gw.report(failed(5, 7, 3));
        assert!(!gw.runs.contains_key(&(7, 3)));
        assert_eq!(gw.kept.len(), 1);
        let (again, again_seen) = recorder();
        attach(&mut gw, 7, 3, &again);
        let _ = again.send(Flush).await;
        assert_eq!(*again_seen.borrow(), vec![5]);
    }

    /// A run's risk actor under supervision, counting its starts.
    struct Run(Rc<RefCell<u32>>);

    impl Actor for Run {
        type Context = Context<Self>;

        fn started(&mut self, _ctx: &mut Context<Self>) {
            *self.0.borrow_mut() += 1;
        }
    }

    impl actix::Supervised for Run {}

    impl Handler<ExitReport> for Run {
        type Result = ();

        fn handle(&mut self, _: ExitReport, ctx: &mut Context<Self>) {
            // The run is over: the actor stops for good.
            ctx.stop();
        }
    }

    #[actix_rt::test]
    async fn an_attached_run_that_stops_is_not_kept_alive_by_the_gateway() {
        let mut gw = gateway();
        let starts = Rc::new(RefCell::new(0));
        let run = crate::supervised::start({
            let starts = starts.clone();
            move |_| Run(starts)
        });
        gw.attach_run(AttachRun {
            strategy_id: 7,
            run_id: 3,
            listener: run.recipient(),
        });
        // Only the gateway knows the run now.
        gw.report(exited(1, 7, 3));
        for _ in 0..100 {
            actix_rt::task::yield_now().await;
        }
        assert_eq!(*starts.borrow(), 1, "the stopped run was not restarted");
        gw.report(failed(2, 7, 3));
        assert!(!gw.runs.contains_key(&(7, 3)));
        assert_eq!(gw.kept.len(), 1, "the report waits for a listener");
    }
}
