//! Black-Scholes prices and Greeks for the simulated option chains (European, no dividends).

use std::f64::consts::{FRAC_1_SQRT_2, PI};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Right {
    Call,
    Put,
}

impl Right {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Right::Call => "CE",
            Right::Put => "PE",
        }
    }
}

/// Complementary error function (Numerical Recipes `erfcc`, fractional error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

pub(crate) fn norm_cdf(x: f64) -> f64 {
    0.5 * erfc(-x * FRAC_1_SQRT_2)
}

fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

fn intrinsic(spot: f64, strike: f64, right: Right) -> f64 {
    match right {
        Right::Call => (spot - strike).max(0.0),
        Right::Put => (strike - spot).max(0.0),
    }
}

/// Theoretical price. `years` ≤ 0 (expired) gives the intrinsic value.
pub(crate) fn price(spot: f64, strike: f64, years: f64, iv: f64, rate: f64, right: Right) -> f64 {
    if years <= 0.0 || iv <= 0.0 || spot <= 0.0 || strike <= 0.0 {
        return intrinsic(spot, strike, right);
    }
    let sqrt_t = years.sqrt();
    let d1 = ((spot / strike).ln() + (rate + 0.5 * iv * iv) * years) / (iv * sqrt_t);
    let d2 = d1 - iv * sqrt_t;
    let discounted = strike * (-rate * years).exp();
    match right {
        Right::Call => spot * norm_cdf(d1) - discounted * norm_cdf(d2),
        Right::Put => discounted * norm_cdf(-d2) - spot * norm_cdf(-d1),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Greeks {
    pub delta: f64,
    pub gamma: f64,
    /// Per calendar day.
    pub theta: f64,
    /// Per 1 percentage point of volatility.
    pub vega: f64,
}

pub(crate) fn greeks(
    spot: f64,
    strike: f64,
    years: f64,
    iv: f64,
    rate: f64,
    right: Right,
) -> Greeks {
    if years <= 0.0 || iv <= 0.0 || spot <= 0.0 || strike <= 0.0 {
        let itm = intrinsic(spot, strike, right) > 0.0;
        let delta = match (right, itm) {
            (Right::Call, true) => 1.0,
            (Right::Put, true) => -1.0,
            _ => 0.0,
        };
        return Greeks {
            delta,
            gamma: 0.0,
            theta: 0.0,
            vega: 0.0,
        };
    }
    let sqrt_t = years.sqrt();
    let d1 = ((spot / strike).ln() + (rate + 0.5 * iv * iv) * years) / (iv * sqrt_t);
    let d2 = d1 - iv * sqrt_t;
    let pdf = norm_pdf(d1);
    let discounted = strike * (-rate * years).exp();
    let decay = -spot * pdf * iv / (2.0 * sqrt_t);
    let (delta, theta_year) = match right {
        Right::Call => (norm_cdf(d1), decay - rate * discounted * norm_cdf(d2)),
        Right::Put => (
            norm_cdf(d1) - 1.0,
            decay + rate * discounted * norm_cdf(-d2),
        ),
    };
    Greeks {
        delta,
        gamma: pdf / (spot * iv * sqrt_t),
        theta: theta_year / 365.0,
        vega: spot * pdf * sqrt_t / 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_known_values() {
        assert!((norm_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((norm_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((norm_cdf(-1.96) - 0.024_997_895).abs() < 1e-6);
    }

    #[test]
    fn call_price_matches_a_textbook_value_and_put_call_parity_holds() {
        // S=100, K=100, T=1, sigma=20%, r=5%: call 10.4506, put 5.5735.
        let call = price(100.0, 100.0, 1.0, 0.2, 0.05, Right::Call);
        let put = price(100.0, 100.0, 1.0, 0.2, 0.05, Right::Put);
        assert!((call - 10.4506).abs() < 1e-3, "{call}");
        assert!((put - 5.5735).abs() < 1e-3, "{put}");
        assert!((call - put - (100.0 - 100.0 * (-0.05f64).exp())).abs() < 1e-6);
    }

    #[test]
    fn expired_options_are_worth_their_intrinsic_value() {
        assert_eq!(
            price(25_000.0, 24_800.0, 0.0, 0.12, 0.0, Right::Call),
            200.0
        );
        assert_eq!(price(25_000.0, 24_800.0, -1.0, 0.12, 0.0, Right::Put), 0.0);
    }

    #[test]
    fn greeks_have_the_textbook_signs_and_sizes() {
        let call = greeks(100.0, 100.0, 1.0, 0.2, 0.05, Right::Call);
        let put = greeks(100.0, 100.0, 1.0, 0.2, 0.05, Right::Put);
        assert!((call.delta - 0.6368).abs() < 1e-3, "{call:?}");
        assert!((put.delta - (call.delta - 1.0)).abs() < 1e-9);
        assert!((call.gamma - 0.018_762).abs() < 1e-4);
        assert!((call.vega - 0.375_2).abs() < 1e-3);
        assert!(call.theta < 0.0 && put.theta < 0.0);
    }
}
