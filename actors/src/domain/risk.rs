//! Risk rules of a strategy run (docs/ARCHITECTURE.md §4.8): max loss, max profit and a trailing
//! stop, with an optional confirmation window. Checked on every P&L update.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Tolerance (in rupees) applied in favour of triggering, so a P&L that equals a threshold up
/// to floating-point noise counts as equal. Far below one paisa.
pub const THRESHOLD_EPSILON: f64 = 1e-6;

/// How the trailing distance is expressed.
#[derive(utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrailingKind {
    /// A fixed amount in rupees.
    Amount,
    /// Points per unit: `value × Σ open qty`.
    Points,
    /// A percentage of the run's absolute net premium.
    Percentage,
}

impl TrailingKind {
    /// The stored name: "amount", "points" or "percentage".
    pub fn as_str(self) -> &'static str {
        match self {
            TrailingKind::Amount => "amount",
            TrailingKind::Points => "points",
            TrailingKind::Percentage => "percentage",
        }
    }
}

/// A trailing-stop type other than amount, points or percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trailing stop type {0:?}: expected amount, points or percentage")]
pub struct InvalidTrailingKind(pub String);

impl FromStr for TrailingKind {
    type Err = InvalidTrailingKind;

    /// Parses "amount", "points" or "percentage" in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        [
            TrailingKind::Amount,
            TrailingKind::Points,
            TrailingKind::Percentage,
        ]
        .into_iter()
        .find(|k| t.eq_ignore_ascii_case(k.as_str()))
        .ok_or_else(|| InvalidTrailingKind(s.to_owned()))
    }
}

/// Trailing-stop settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trailing {
    /// How `value` is interpreted.
    pub kind: TrailingKind,
    /// Rupees, points per unit, or percent, depending on `kind`.
    pub value: f64,
    /// Profit at which the trail starts (0 = as soon as the run is not at a loss).
    pub activation: f64,
}

/// The risk limits of a strategy; every rule is optional.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RiskLimits {
    /// Exit when P&L ≤ −max_loss.
    pub max_loss: Option<f64>,
    /// Exit when P&L ≥ max_profit.
    pub max_profit: Option<f64>,
    /// Exit when P&L falls back to the trailing stop.
    pub trailing: Option<Trailing>,
    /// How long a breach must persist before it triggers (zero = at once).
    pub confirm: Duration,
}

fn positive(field: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => {
            Err(format!("{field} must be a positive number, got {v}"))
        }
        _ => Ok(()),
    }
}

/// Checks limits before they are stored; the error names the offending field.
pub fn validate(limits: &RiskLimits) -> Result<(), String> {
    positive("max_loss", limits.max_loss)?;
    positive("max_profit", limits.max_profit)?;
    let Some(t) = &limits.trailing else {
        return Ok(());
    };
    positive("trailing.value", Some(t.value))?;
    if t.kind == TrailingKind::Percentage && t.value > 100.0 {
        return Err(format!(
            "trailing.value must be at most 100 for a percentage trailing stop, got {}",
            t.value
        ));
    }
    if !(t.activation.is_finite() && t.activation >= 0.0) {
        return Err(format!(
            "trailing.activation must be zero or a positive number, got {}",
            t.activation
        ));
    }
    if let Some(p) = limits.max_profit
        && t.activation >= p
    {
        return Err(format!(
            "trailing.activation ({}) must be below max_profit ({p}): the profit target would \
             exit before the trailing stop could start",
            t.activation
        ));
    }
    Ok(())
}

/// Trailing distance in rupees: amount → `value`; points → `value × Σ open qty`;
/// percentage → `value % × |net premium|`.
pub fn trailing_distance(
    kind: TrailingKind,
    value: f64,
    open_qty_sum: f64,
    net_premium: f64,
) -> f64 {
    match kind {
        TrailingKind::Amount => value,
        TrailingKind::Points => value * open_qty_sum,
        TrailingKind::Percentage => value / 100.0 * net_premium.abs(),
    }
}

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// P&L fell to −max_loss.
    MaxLoss,
    /// P&L reached max_profit.
    MaxProfit,
    /// P&L fell back to the trailing stop.
    TrailingStop,
}

impl Rule {
    /// The stored name: "max_loss", "max_profit" or "trailing_stop".
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::MaxLoss => "max_loss",
            Rule::MaxProfit => "max_profit",
            Rule::TrailingStop => "trailing_stop",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Nothing breached.
    Hold,
    /// `rule` is breached but has not yet persisted for the confirmation window.
    Breaching {
        /// The breached rule.
        rule: Rule,
    },
    /// Exit now: `rule` breached at `threshold` (the P&L level that was crossed).
    Trigger {
        /// The rule that fired.
        rule: Rule,
        /// The threshold crossed: −max_loss, max_profit or the trailing stop.
        threshold: f64,
    },
}

/// Per-run risk state. Persist `peak` and `stop` so a restart resumes the trail; a new run
/// starts from `RiskState::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RiskState {
    /// Highest P&L since the trail activated.
    pub peak: Option<f64>,
    /// Current trailing stop; only ever rises.
    pub stop: Option<f64>,
    /// When the current, still unconfirmed, breach began.
    pub breach_since: Option<Instant>,
}

impl RiskState {
    /// Updates the trail with `pnl` and checks every rule (max loss first, then the trailing
    /// stop, then max profit). `distance` is the current trailing distance (see
    /// [`trailing_distance`]); a non-positive one does not move the stop. A P&L that is not a
    /// finite number holds and changes nothing. After a Trigger the caller exits the run and
    /// stops evaluating it.
    pub fn evaluate(
        &mut self,
        limits: &RiskLimits,
        pnl: f64,
        distance: f64,
        now: Instant,
    ) -> Decision {
        if !pnl.is_finite() {
            return Decision::Hold;
        }
        if let Some(trailing) = &limits.trailing {
            self.trail(trailing, pnl, distance);
        }
        let Some((rule, threshold)) = self.breached(limits, pnl) else {
            self.breach_since = None;
            return Decision::Hold;
        };
        let since = *self.breach_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= limits.confirm {
            Decision::Trigger { rule, threshold }
        } else {
            Decision::Breaching { rule }
        }
    }

    fn trail(&mut self, trailing: &Trailing, pnl: f64, distance: f64) {
        if self.peak.is_none() && pnl < trailing.activation - THRESHOLD_EPSILON {
            return;
        }
        let peak = self.peak.map_or(pnl, |p| p.max(pnl));
        self.peak = Some(peak);
        if distance.is_finite() && distance > THRESHOLD_EPSILON {
            let candidate = peak - distance;
            self.stop = Some(self.stop.map_or(candidate, |s| s.max(candidate)));
        }
    }

    fn breached(&self, limits: &RiskLimits, pnl: f64) -> Option<(Rule, f64)> {
        if let Some(l) = limits.max_loss
            && pnl <= -l + THRESHOLD_EPSILON
        {
            return Some((Rule::MaxLoss, -l));
        }
        if limits.trailing.is_some()
            && let Some(stop) = self.stop
            && pnl <= stop + THRESHOLD_EPSILON
        {
            return Some((Rule::TrailingStop, stop));
        }
        if let Some(p) = limits.max_profit
            && pnl >= p - THRESHOLD_EPSILON
        {
            return Some((Rule::MaxProfit, p));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RiskLimits {
        RiskLimits::default()
    }

    fn trailing(kind: TrailingKind, value: f64, activation: f64) -> Option<Trailing> {
        Some(Trailing {
            kind,
            value,
            activation,
        })
    }

    /// Runs a P&L sequence at one instant and returns the decisions.
    fn run(limits: &RiskLimits, distance: f64, pnls: &[f64]) -> (Vec<Decision>, RiskState) {
        let now = Instant::now();
        let mut state = RiskState::default();
        let decisions = pnls
            .iter()
            .map(|&p| state.evaluate(limits, p, distance, now))
            .collect();
        (decisions, state)
    }

    fn trigger(rule: Rule, threshold: f64) -> Decision {
        Decision::Trigger { rule, threshold }
    }

    #[test]
    fn max_loss_triggers_at_the_threshold_not_a_paisa_before() {
        let l = RiskLimits {
            max_loss: Some(5000.0),
            ..limits()
        };
        let cases = [
            (-4999.99, Decision::Hold),
            (-5000.0, trigger(Rule::MaxLoss, -5000.0)),
            (-5000.01, trigger(Rule::MaxLoss, -5000.0)),
            (-5000.0 + 1e-9, trigger(Rule::MaxLoss, -5000.0)),
            (0.0, Decision::Hold),
            (1e9, Decision::Hold),
        ];
        for (pnl, want) in cases {
            assert_eq!(run(&l, 0.0, &[pnl]).0, [want], "pnl {pnl}");
        }
    }

    #[test]
    fn max_profit_triggers_at_the_threshold_not_a_paisa_before() {
        let l = RiskLimits {
            max_profit: Some(3000.0),
            ..limits()
        };
        let cases = [
            (2999.99, Decision::Hold),
            (3000.0, trigger(Rule::MaxProfit, 3000.0)),
            (3500.0, trigger(Rule::MaxProfit, 3000.0)),
            (-1e9, Decision::Hold),
        ];
        for (pnl, want) in cases {
            assert_eq!(run(&l, 0.0, &[pnl]).0, [want], "pnl {pnl}");
        }
    }

    #[test]
    fn no_limits_always_hold() {
        let (d, s) = run(&limits(), 100.0, &[-1e9, 0.0, 1e9]);
        assert_eq!(d, [Decision::Hold; 3]);
        assert_eq!(s, RiskState::default());
    }

    #[test]
    fn trailing_without_activation_starts_at_break_even() {
        let l = RiskLimits {
            trailing: trailing(TrailingKind::Amount, 500.0, 0.0),
            ..limits()
        };
        let (d, s) = run(&l, 500.0, &[-100.0]);
        assert_eq!(d, [Decision::Hold]);
        assert_eq!((s.peak, s.stop), (None, None));
        let (d, s) = run(&l, 500.0, &[-100.0, 0.0, 1000.0, 500.01]);
        assert_eq!(d, [Decision::Hold; 4]);
        assert_eq!((s.peak, s.stop), (Some(1000.0), Some(500.0)));
        let (d, _) = run(&l, 500.0, &[0.0, 1000.0, 500.0]);
        assert_eq!(d[2], trigger(Rule::TrailingStop, 500.0));
        // Before any gain, the stop sits at −D below break-even.
        let (d, _) = run(&l, 500.0, &[0.0, -499.99, -500.0]);
        assert_eq!(
            d,
            [
                Decision::Hold,
                Decision::Hold,
                trigger(Rule::TrailingStop, -500.0)
            ]
        );
    }

    #[test]
    fn trailing_with_activation_waits_for_the_profit() {
        let l = RiskLimits {
            trailing: trailing(TrailingKind::Amount, 300.0, 1000.0),
            ..limits()
        };
        // Below activation: no peak, no stop, no trigger however far it falls back.
        let (d, s) = run(&l, 300.0, &[900.0, 999.99, 100.0, -2000.0]);
        assert_eq!(d, [Decision::Hold; 4]);
        assert_eq!((s.peak, s.stop), (None, None));
        // Exactly at activation the trail starts.
        let (d, s) = run(&l, 300.0, &[1000.0, 700.01]);
        assert_eq!(d, [Decision::Hold; 2]);
        assert_eq!((s.peak, s.stop), (Some(1000.0), Some(700.0)));
        let (d, _) = run(&l, 300.0, &[1000.0, 1400.0, 1100.0]);
        assert_eq!(d[2], trigger(Rule::TrailingStop, 1100.0));
        // Once active it stays active even below the activation level.
        let (d, _) = run(&l, 300.0, &[1000.0, 800.0, 700.0]);
        assert_eq!(
            d,
            [
                Decision::Hold,
                Decision::Hold,
                trigger(Rule::TrailingStop, 700.0)
            ]
        );
    }

    #[test]
    fn trailing_distance_by_kind() {
        let cases = [
            (TrailingKind::Amount, 750.0, 130.0, -13000.0, 750.0),
            (TrailingKind::Points, 2.0, 130.0, -13000.0, 260.0),
            (TrailingKind::Points, 2.0, 0.0, -13000.0, 0.0),
            (TrailingKind::Percentage, 10.0, 130.0, -13000.0, 1300.0),
            (TrailingKind::Percentage, 10.0, 130.0, 13000.0, 1300.0),
            (TrailingKind::Percentage, 100.0, 1.0, 250.0, 250.0),
        ];
        for (kind, value, qty, premium, want) in cases {
            let got = trailing_distance(kind, value, qty, premium);
            assert!(
                (got - want).abs() < 1e-9,
                "{kind:?} {value}: {got} != {want}"
            );
        }
    }

    #[test]
    fn points_and_percentage_trails_use_the_given_distance() {
        for (kind, value, distance) in [
            (
                TrailingKind::Points,
                2.0,
                trailing_distance(TrailingKind::Points, 2.0, 130.0, 0.0),
            ),
            (
                TrailingKind::Percentage,
                10.0,
                trailing_distance(TrailingKind::Percentage, 10.0, 0.0, -2600.0),
            ),
        ] {
            let l = RiskLimits {
                trailing: trailing(kind, value, 100.0),
                ..limits()
            };
            let peak = 1000.0;
            let (d, s) = run(
                &l,
                distance,
                &[peak, peak - distance + 0.01, peak - distance],
            );
            assert_eq!(s.stop, Some(peak - distance), "{kind:?}");
            assert_eq!(
                d,
                [
                    Decision::Hold,
                    Decision::Hold,
                    trigger(Rule::TrailingStop, peak - distance)
                ],
                "{kind:?}"
            );
        }
    }

    #[test]
    fn stop_ratchets_up_only() {
        let l = RiskLimits {
            trailing: trailing(TrailingKind::Points, 5.0, 0.0),
            ..limits()
        };
        let now = Instant::now();
        let mut s = RiskState::default();
        s.evaluate(&l, 1000.0, 300.0, now);
        assert_eq!(s.stop, Some(700.0));
        // A larger distance later (more open quantity) never lowers the stop.
        assert_eq!(s.evaluate(&l, 900.0, 600.0, now), Decision::Hold);
        assert_eq!(s.stop, Some(700.0));
        // A smaller one tightens it from the same peak.
        assert_eq!(s.evaluate(&l, 900.0, 150.0, now), Decision::Hold);
        assert_eq!(s.stop, Some(850.0));
        // Falling P&L moves neither peak nor stop.
        s.evaluate(&l, 860.0, 150.0, now);
        assert_eq!((s.peak, s.stop), (Some(1000.0), Some(850.0)));
        // A new high raises both.
        s.evaluate(&l, 1200.0, 150.0, now);
        assert_eq!((s.peak, s.stop), (Some(1200.0), Some(1050.0)));
        // A zero distance (no open quantity) leaves the stop alone.
        s.evaluate(&l, 1300.0, 0.0, now);
        assert_eq!((s.peak, s.stop), (Some(1300.0), Some(1050.0)));
    }

    #[test]
    fn resumed_state_keeps_its_trail() {
        let l = RiskLimits {
            trailing: trailing(TrailingKind::Amount, 500.0, 0.0),
            ..limits()
        };
        let mut s = RiskState {
            peak: Some(2000.0),
            stop: Some(1500.0),
            breach_since: None,
        };
        assert_eq!(
            s.evaluate(&l, 1600.0, 500.0, Instant::now()),
            Decision::Hold
        );
        assert_eq!(
            s.evaluate(&l, 1500.0, 500.0, Instant::now()),
            trigger(Rule::TrailingStop, 1500.0)
        );
    }

    #[test]
    fn several_breaches_resolve_in_rule_order() {
        let now = Instant::now();
        // Max loss and trailing stop at once: max loss wins.
        let l = RiskLimits {
            max_loss: Some(300.0),
            trailing: trailing(TrailingKind::Amount, 500.0, 0.0),
            ..limits()
        };
        let (d, _) = run(&l, 500.0, &[0.0, -600.0]);
        assert_eq!(d[1], trigger(Rule::MaxLoss, -300.0));
        // Trailing stop and max profit at once: the trailing stop wins.
        let l = RiskLimits {
            max_profit: Some(1000.0),
            trailing: trailing(TrailingKind::Amount, 100.0, 0.0),
            ..limits()
        };
        let mut s = RiskState {
            peak: Some(1500.0),
            stop: Some(1400.0),
            breach_since: None,
        };
        assert_eq!(
            s.evaluate(&l, 1200.0, 100.0, now),
            trigger(Rule::TrailingStop, 1400.0)
        );
        // Removing the trailing rule stops a leftover stop from firing.
        let l = RiskLimits {
            max_profit: Some(1000.0),
            ..limits()
        };
        assert_eq!(
            s.evaluate(&l, 1200.0, 100.0, now),
            trigger(Rule::MaxProfit, 1000.0)
        );
    }

    #[test]
    fn confirmation_window() {
        let l = RiskLimits {
            max_loss: Some(1000.0),
            confirm: Duration::from_millis(500),
            ..limits()
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let breaching = Decision::Breaching {
            rule: Rule::MaxLoss,
        };
        let mut s = RiskState::default();
        // (ms, pnl, decision)
        let steps = [
            (0, -1000.0, breaching),
            (499, -1200.0, breaching),
            // Recovery clears the pending breach.
            (600, -999.0, Decision::Hold),
            (700, -1000.0, breaching),
            (1199, -1100.0, breaching),
            (1200, -1050.0, trigger(Rule::MaxLoss, -1000.0)),
        ];
        for (ms, pnl, want) in steps {
            assert_eq!(s.evaluate(&l, pnl, 0.0, at(ms)), want, "at {ms} ms");
        }
        // NaN neither clears nor advances anything.
        let mut s = RiskState::default();
        s.evaluate(&l, -1000.0, 0.0, at(0));
        assert_eq!(s.evaluate(&l, f64::NAN, 0.0, at(300)), Decision::Hold);
        assert_eq!(s.breach_since, Some(at(0)));
        assert_eq!(
            s.evaluate(&l, -1000.0, 0.0, at(500)),
            trigger(Rule::MaxLoss, -1000.0)
        );
    }

    #[test]
    fn validation() {
        let t = |kind, value, activation| trailing(kind, value, activation);
        let ok = [
            limits(),
            RiskLimits {
                max_loss: Some(5000.0),
                max_profit: Some(3000.0),
                trailing: t(TrailingKind::Percentage, 100.0, 2999.0),
                confirm: Duration::from_millis(250),
            },
            RiskLimits {
                trailing: t(TrailingKind::Points, 0.5, 0.0),
                ..limits()
            },
        ];
        for l in ok {
            assert_eq!(validate(&l), Ok(()), "{l:?}");
        }
        let bad = [
            (
                RiskLimits {
                    max_loss: Some(0.0),
                    ..limits()
                },
                "max_loss",
            ),
            (
                RiskLimits {
                    max_loss: Some(-10.0),
                    ..limits()
                },
                "max_loss",
            ),
            (
                RiskLimits {
                    max_profit: Some(f64::NAN),
                    ..limits()
                },
                "max_profit",
            ),
            (
                RiskLimits {
                    trailing: t(TrailingKind::Amount, 0.0, 0.0),
                    ..limits()
                },
                "trailing.value",
            ),
            (
                RiskLimits {
                    trailing: t(TrailingKind::Percentage, 100.5, 0.0),
                    ..limits()
                },
                "trailing.value",
            ),
            (
                RiskLimits {
                    trailing: t(TrailingKind::Amount, 10.0, -1.0),
                    ..limits()
                },
                "trailing.activation",
            ),
            (
                RiskLimits {
                    trailing: t(TrailingKind::Amount, 10.0, f64::NAN),
                    ..limits()
                },
                "trailing.activation",
            ),
            (
                RiskLimits {
                    max_profit: Some(3000.0),
                    trailing: t(TrailingKind::Amount, 10.0, 3000.0),
                    ..limits()
                },
                "max_profit",
            ),
        ];
        for (l, field) in bad {
            let err = validate(&l).expect_err("must be rejected");
            assert!(err.contains(field), "{err:?} should name {field}");
        }
    }

    #[test]
    fn names_round_trip() {
        for k in [
            TrailingKind::Amount,
            TrailingKind::Points,
            TrailingKind::Percentage,
        ] {
            assert_eq!(k.as_str().parse::<TrailingKind>(), Ok(k));
            assert_eq!(k.as_str().to_uppercase().parse::<TrailingKind>(), Ok(k));
        }
        assert!("pct".parse::<TrailingKind>().is_err());
        assert_eq!(
            serde_json::to_string(&Rule::TrailingStop).unwrap(),
            "\"trailing_stop\""
        );
        assert_eq!(Rule::MaxLoss.as_str(), "max_loss");
    }
}
