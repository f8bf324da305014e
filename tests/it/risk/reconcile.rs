//! Reconciliation with each account's position book (docs/ARCHITECTURE.md §4.7): untracked broker
//! positions are adopted into the account's `manual:<name>` strategy, tracked legs gone at the
//! broker are exited as `closed_externally`.

use ::actors::positions::GetMonitorStatus;
use entity::strategies;
use entity::strategy_executions::{self, ExecutionStatus, ExitReason, TradeAction};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use super::{Harness, LegSpec, WAIT, close, options};
use crate::helpers::poll_until;

#[actix_web::test]
async fn broker_positions_are_adopted_and_closed_legs_marked_exited() {
    let mut opts = options();
    opts.position_monitor.reconcile_interval_s = 1;
    let h = Harness::start(opts).await;
    let id = h.strategy("tracked", json!({"max_loss": 5000.0})).await;
    let tracked = h.open(LegSpec::equity(id, "INFY", "BUY", 10, 100.0)).await;

    // Outside the supervisor: a trade on account B, and the tracked leg closed on account A.
    h.price("NSE", "SBIN", 900.0).await;
    h.sim_order(1, "SBIN", "BUY", 25, "outside").await;
    h.price("NSE", "INFY", 104.0).await;
    h.sim_order(0, "INFY", "SELL", 10, "outside").await;

    let closed = h.wait_exited(tracked).await;
    assert_eq!(closed.exit_reason, Some(ExitReason::ClosedExternally));
    assert!(close(closed.exit_price.unwrap(), 104.0));
    assert!(close(closed.realized_pnl.unwrap(), 40.0));
    h.wait_state(id, "exited").await;
    assert!(h.orders_of("tracked").await.is_empty(), "nothing was sent");

    let manual = poll_until(WAIT, "the manual strategy of account B", || async {
        strategies::Entity::find()
            .filter(strategies::Column::Name.eq("manual:acct-b"))
            .one(&h.db)
            .await
            .ok()?
    })
    .await;
    assert_eq!((manual.max_loss, manual.trailing_sl_type), (None, None));
    let adopted = poll_until(WAIT, "the adopted leg", || async {
        let legs = strategy_executions::Entity::find()
            .filter(strategy_executions::Column::StrategyId.eq(manual.id))
            .all(&h.db)
            .await
            .ok()?;
        legs.into_iter().next()
    })
    .await;
    assert_eq!(adopted.account_id, h.accounts[1].id);
    assert_eq!((adopted.symbol.as_str(), adopted.quantity), ("SBIN", 25));
    assert_eq!(adopted.action, TradeAction::Buy);
    assert_eq!(adopted.status, ExecutionStatus::Entered);
    assert!(close(adopted.entry_price, 900.0));
    // Monitored at once: subscribed, and priced by the next tick.
    h.wait_subscribed("NSE", "SBIN").await;
    h.price("NSE", "SBIN", 900.0).await;
    let position = poll_until(WAIT, "the adopted leg priced", || async {
        h.position(adopted.id).await.filter(|p| p["ltp"] == 900.0)
    })
    .await;
    assert_eq!(position["account"], "acct-b");

    // Later passes find everything matching: nothing is adopted twice.
    let monitor = h.p().monitor.clone();
    let passes = monitor
        .send(GetMonitorStatus)
        .await
        .unwrap()
        .reconciliations;
    poll_until(
        WAIT,
        "two more reconciliation passes per account",
        || async {
            let now = monitor.send(GetMonitorStatus).await.ok()?.reconciliations;
            (now >= passes + 4).then_some(())
        },
    )
    .await;
    let status = monitor.send(GetMonitorStatus).await.unwrap();
    assert_eq!(
        (status.adopted, status.closed_externally),
        (1, 1),
        "{status:?}"
    );
    let count = strategy_executions::Entity::find()
        .filter(strategy_executions::Column::StrategyId.eq(manual.id))
        .all(&h.db)
        .await
        .unwrap()
        .len();
    assert_eq!(count, 1);
}
