//! The REST quote fallback (docs/ARCHITECTURE.md §4.7): a leg whose feed price is stale, or every
//! leg while the feed is down, is priced with a REST quote. [`QuoteActor`] asks through the
//! leg's own account while its gateway answers, else through any other
//! ([`crate::domain::quotes`]), each account within its rate limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::accounts::{client_of, follow};
use crate::accounts::{AccountsReach, Reach};
use crate::domain::quotes::{QuoteSource, quote_route};
use crate::domain::rate_limit::RateLimiter;
use crate::openalgo::rest::RestClient;
use crate::orders::{AccountEndpoint, SetAccounts};

#[derive(Debug, Clone)]
pub struct QuoteSettings {
    /// REST calls per account per second.
    pub per_s: u32,
    pub rest_timeout: Duration,
}

/// The last traded price of an instrument, for a leg of `account_id`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Quote, QuoteError>")]
pub struct FetchQuote {
    pub account_id: i32,
    pub exchange: String,
    pub symbol: String,
}

/// How many accounts quotes can be asked through.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct QuoteAccounts;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quote {
    pub ltp: f64,
    /// The account it was asked through.
    pub via: i32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuoteError {
    /// No account's rate limit allows a call now; asked again at the next check.
    #[error("no account may be asked now")]
    Busy,
    #[error("quote through account {via}: {message}")]
    Failed { via: i32, message: String },
}

struct Source {
    endpoint: AccountEndpoint,
    client: RestClient,
    limiter: RateLimiter,
    /// The last quote asked through this account failed.
    failed: bool,
}

pub struct QuoteActor {
    settings: QuoteSettings,
    accounts: HashMap<i32, Source>,
    /// Every active account's reachability, from the account monitor.
    reach: HashMap<i32, Reach>,
}

impl QuoteActor {
    pub fn new(settings: QuoteSettings) -> Self {
        QuoteActor {
            settings,
            accounts: HashMap::new(),
            reach: HashMap::new(),
        }
    }

    /// Every account as a source of quotes, with what the pings and earlier quotes say.
    fn sources(&self) -> Vec<QuoteSource> {
        self.accounts
            .values()
            .map(|a| {
                let reach = self.reach.get(&a.endpoint.id);
                QuoteSource {
                    account_id: a.endpoint.id,
                    reachable: reach.is_none_or(|r| r.reachable),
                    answered_last_ping: reach.is_none_or(|r| r.answered_last_ping),
                    last_quote_failed: a.failed,
                }
            })
            .collect()
    }
}

impl Actor for QuoteActor {
    type Context = Context<Self>;
}

impl actix::Supervised for QuoteActor {}

impl Handler<SetAccounts> for QuoteActor {
    type Result = ();

    fn handle(&mut self, msg: SetAccounts, _ctx: &mut Context<Self>) {
        let (timeout, per_s) = (self.settings.rest_timeout, self.settings.per_s);
        self.accounts = follow(
            &mut self.accounts,
            msg.0,
            |a| &a.endpoint,
            |endpoint| {
                let (client, limiter) = client_of(&endpoint, timeout, per_s);
                Source {
                    client,
                    limiter,
                    failed: false,
                    endpoint,
                }
            },
        );
    }
}

impl Handler<AccountsReach> for QuoteActor {
    type Result = ();

    fn handle(&mut self, msg: AccountsReach, _ctx: &mut Context<Self>) {
        self.reach = msg.0.into_iter().map(|r| (r.account_id, r)).collect();
    }
}

impl Handler<QuoteAccounts> for QuoteActor {
    type Result = usize;

    fn handle(&mut self, _: QuoteAccounts, _ctx: &mut Context<Self>) -> usize {
        self.accounts.len()
    }
}

impl Handler<FetchQuote> for QuoteActor {
    type Result = ResponseActFuture<Self, Result<Quote, QuoteError>>;

    /// Asks through the best account whose rate limit allows it now.
    fn handle(&mut self, msg: FetchQuote, _ctx: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let route = quote_route(msg.account_id, &self.sources());
        let via = route.into_iter().find(|id| {
            self.accounts
                .get_mut(id)
                .is_some_and(|a| a.limiter.try_acquire(now).is_ok())
        });
        let Some((via, client)) =
            via.and_then(|id| Some((id, self.accounts.get(&id)?.client.clone())))
        else {
            return Box::pin(fut::ready(Err(QuoteError::Busy)));
        };
        Box::pin(
            async move { client.quotes(&msg.exchange, &msg.symbol).await }
                .into_actor(self)
                .map(move |answer, act, _ctx| {
                    if let Some(a) = act.accounts.get_mut(&via) {
                        a.failed = answer.is_err();
                    }
                    answer
                        .map(|q| Quote { ltp: q.ltp, via })
                        .map_err(|e| QuoteError::Failed {
                            via,
                            message: e.to_string(),
                        })
                }),
        )
    }
}
