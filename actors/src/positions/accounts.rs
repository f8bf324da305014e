//! The accounts the quote fallback and reconciliation call: each keeps one REST client and one
//! call rate limit per account, for as long as the account's endpoint stays the same.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::rate_limit::RateLimiter;
use crate::openalgo::rest::RestClient;
use crate::orders::AccountEndpoint;

/// A REST client for `endpoint` and a limit of `per_s` calls a second through it.
pub(super) fn client_of(
    endpoint: &AccountEndpoint,
    timeout: Duration,
    per_s: u32,
) -> (RestClient, RateLimiter) {
    (
        RestClient::new(&endpoint.rest_url, &endpoint.api_key, timeout),
        RateLimiter::new(per_s, Duration::from_secs(1)),
    )
}

/// The entries for a new list of accounts: an account whose endpoint is unchanged keeps its
/// entry (its limiter's history included), any other gets one from `make`.
pub(super) fn follow<T>(
    old: &mut HashMap<i32, T>,
    endpoints: Vec<AccountEndpoint>,
    endpoint_of: impl Fn(&T) -> &AccountEndpoint,
    mut make: impl FnMut(AccountEndpoint) -> T,
) -> HashMap<i32, T> {
    endpoints
        .into_iter()
        .map(|endpoint| {
            let id = endpoint.id;
            let kept = old.remove(&id).filter(|a| *endpoint_of(a) == endpoint);
            (id, kept.unwrap_or_else(|| make(endpoint)))
        })
        .collect()
}
