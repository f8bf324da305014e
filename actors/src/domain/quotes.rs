//! Where to ask for a REST quote of an open leg when its feed price is missing (the feed is
//! down, or the leg's symbol has no live price). Prices are prices: any account's gateway may
//! quote any leg, so a leg whose own gateway is down is priced through another one.

/// What is known about one account's gateway when choosing where to ask for a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteSource {
    /// The account.
    pub account_id: i32,
    /// Fewer than `failover_after_failures` consecutive failed pings (true until known).
    pub reachable: bool,
    /// Its last ping was answered (true until known).
    pub answered_last_ping: bool,
    /// The last quote asked through it failed.
    pub last_quote_failed: bool,
}

/// The accounts to ask for a quote of a leg of account `own`, best first: reachable gateways
/// before unreachable ones, then those whose last quote did not fail, then those that answered
/// their last ping, then the leg's own account, then by id. Every account is listed: when none
/// is healthy, trying one is still better than pricing nothing (the caller's rate limit bounds
/// the attempts).
pub fn quote_route(own: i32, sources: &[QuoteSource]) -> Vec<i32> {
    let mut ranked: Vec<&QuoteSource> = sources.iter().collect();
    ranked.sort_by_key(|s| {
        (
            !s.reachable,
            s.last_quote_failed,
            !s.answered_last_ping,
            s.account_id != own,
            s.account_id,
        )
    });
    ranked.into_iter().map(|s| s.account_id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(account_id: i32) -> QuoteSource {
        QuoteSource {
            account_id,
            reachable: true,
            answered_last_ping: true,
            last_quote_failed: false,
        }
    }

    #[test]
    fn the_legs_own_account_first_while_it_is_healthy() {
        let route = quote_route(3, &[source(1), source(2), source(3)]);
        assert_eq!(route, [3, 1, 2]);
    }

    #[test]
    fn an_unreachable_own_gateway_is_tried_last() {
        let mut own = source(1);
        own.reachable = false;
        own.answered_last_ping = false;
        assert_eq!(quote_route(1, &[own, source(2), source(3)]), [2, 3, 1]);
    }

    #[test]
    fn a_failed_quote_or_ping_moves_an_account_back() {
        let mut failed_quote = source(1);
        failed_quote.last_quote_failed = true;
        let mut failed_ping = source(2);
        failed_ping.answered_last_ping = false;
        // Still reachable by the N-failures rule, but the others have no fresh failure.
        assert_eq!(
            quote_route(1, &[failed_quote, failed_ping, source(3)]),
            [3, 2, 1]
        );
    }

    #[test]
    fn with_nothing_healthy_every_account_is_still_listed() {
        let down = |id| QuoteSource {
            account_id: id,
            reachable: false,
            answered_last_ping: false,
            last_quote_failed: true,
        };
        assert_eq!(quote_route(2, &[down(1), down(2)]), [2, 1]);
        assert!(quote_route(1, &[]).is_empty());
    }
}
