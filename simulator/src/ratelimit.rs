//! Per-endpoint moving-window rate limits keyed by client IP (docs/openalgo.md §3.5, Flask-Limiter
//! "moving-window" strategy: a request is refused when the window already holds the
//! limit; refused requests are not counted).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Requests per window (one second, as OpenAlgo counts them) per client IP, per endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// `API_RATE_LIMIT`: ping, books, orderstatus, quotes, funds, expiry, option endpoints,
    /// closeposition, cancelallorder, openposition.
    pub api_per_s: u32,
    /// `ORDER_RATE_LIMIT`: placeorder, modifyorder, cancelorder.
    pub order_per_s: u32,
    /// `SMART_ORDER_RATE_LIMIT`: placesmartorder.
    pub smart_order_per_s: u32,
    /// The moving window the limits count in: one second on the gateway. Tests that must see
    /// a burst refused however slowly they run widen it.
    pub window: Duration,
}

impl Default for RateLimits {
    /// The values of OpenAlgo's `.sample.env`.
    fn default() -> Self {
        RateLimits {
            api_per_s: 50,
            order_per_s: 10,
            smart_order_per_s: 10,
            window: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitClass {
    Api,
    Order,
    SmartOrder,
}

pub(crate) struct RateLimiter {
    limits: RateLimits,
    windows: HashMap<(IpAddr, &'static str), VecDeque<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            limits,
            windows: HashMap::new(),
        }
    }

    /// Records a hit on `endpoint` from `ip` at `now`; false when over the limit.
    pub(crate) fn allow(
        &mut self,
        ip: IpAddr,
        endpoint: &'static str,
        class: LimitClass,
        now: Instant,
    ) -> bool {
        let limit = match class {
            LimitClass::Api => self.limits.api_per_s,
            LimitClass::Order => self.limits.order_per_s,
            LimitClass::SmartOrder => self.limits.smart_order_per_s,
        } as usize;
        let window = self.windows.entry((ip, endpoint)).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.limits.window)
        {
            window.pop_front();
        }
        if window.len() >= limit {
            return false;
        }
        window.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn moving_window_refuses_over_the_limit_and_recovers() {
        let mut limiter = RateLimiter::new(RateLimits {
            api_per_s: 3,
            order_per_s: 1,
            smart_order_per_s: 1,
            window: Duration::from_secs(1),
        });
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let t0 = Instant::now();
        for n in 0..3 {
            assert!(limiter.allow(
                ip,
                "funds",
                LimitClass::Api,
                t0 + Duration::from_millis(n * 100)
            ));
        }
        assert!(!limiter.allow(
            ip,
            "funds",
            LimitClass::Api,
            t0 + Duration::from_millis(500)
        ));
        // Other endpoints and other clients have their own windows.
        assert!(limiter.allow(ip, "ping", LimitClass::Api, t0 + Duration::from_millis(500)));
        assert!(limiter.allow(
            other,
            "funds",
            LimitClass::Api,
            t0 + Duration::from_millis(500)
        ));
        // The first hit leaves the window one second after it was made.
        assert!(!limiter.allow(
            ip,
            "funds",
            LimitClass::Api,
            t0 + Duration::from_millis(999)
        ));
        assert!(limiter.allow(
            ip,
            "funds",
            LimitClass::Api,
            t0 + Duration::from_millis(1000)
        ));
        assert!(limiter.allow(ip, "placeorder", LimitClass::Order, t0));
        assert!(!limiter.allow(ip, "placeorder", LimitClass::Order, t0));
    }
}
