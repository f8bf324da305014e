//! Restart recovery: the `exit_pending` legs of newly configured accounts resume from their
//! `exit_requests` rows before anything new is sent.

use actix::prelude::*;
use entity::strategies;

use super::{OrderGatewayActor, Session};
use crate::orders::store::{self, LegFilter, LoadedLeg};

impl OrderGatewayActor {
    /// Loads the `exit_pending` legs of newly configured accounts and resumes their exits from
    /// their rows before anything new is sent. Legs of strategies in ExitFailed wait for a
    /// human.
    pub(super) fn recover(&mut self, accounts: Vec<i32>, ctx: &mut Context<Self>) {
        if accounts.is_empty() {
            return;
        }
        let db = self.db.clone();
        let retry = accounts.clone();
        ctx.spawn(
            async move { store::load_legs(&db, LegFilter::PendingOn(accounts)).await }
                .into_actor(self)
                .map(move |loaded, act, ctx| match loaded {
                    Ok(loaded) => {
                        let loaded: Vec<LoadedLeg> = loaded
                            .into_iter()
                            .filter(|(l, state)| {
                                if *state == strategies::RiskState::ExitFailed {
                                    tracing::warn!(execution_id = l.leg.id, "exit_pending leg of a strategy in exit_failed is left for a human");
                                    false
                                } else {
                                    true
                                }
                            })
                            .map(|(l, _)| l)
                            .collect();
                        if !loaded.is_empty() {
                            tracing::info!(legs = loaded.len(), "recovering exits left pending by the previous run");
                        }
                        act.accept(loaded, None, Session::Recovery, ctx);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "loading pending exits failed; retrying");
                        act.last_error = Some(format!("loading pending exits: {e}"));
                        for id in &retry {
                            act.recovered_accounts.remove(id);
                        }
                        ctx.run_later(act.settings.retry_initial, move |act, ctx| {
                            let ids: Vec<i32> = retry
                                .iter()
                                .copied()
                                .filter(|id| {
                                    act.lanes.contains_key(id) && act.recovered_accounts.insert(*id)
                                })
                                .collect();
                            act.recover(ids, ctx);
                        });
                    }
                }),
        );
    }
}
