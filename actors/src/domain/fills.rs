//! Bounds of a registered fill: a leg whose quantity, price or notional no real instrument has
//! would make the P&L meaningless (or infinite) and its exit a flood of orders, so it is
//! refused before anything is stored.

use crate::domain::exits::max_chunk;

/// The bounds, from the `risk` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillLimits {
    /// Largest quantity of one leg, in units.
    pub max_leg_quantity: i64,
    /// Largest entry price (and accepted market price).
    pub max_price: f64,
    /// Largest quantity × entry price of one leg.
    pub max_leg_notional: f64,
    /// Largest number of exit orders one leg may need (quantity ÷ freeze quantity).
    pub max_exit_orders_per_leg: i64,
}

impl Default for FillLimits {
    /// The settings' defaults.
    fn default() -> Self {
        FillLimits {
            max_leg_quantity: 1_000_000,
            max_price: 10_000_000.0,
            max_leg_notional: 10_000_000_000.0,
            max_exit_orders_per_leg: 200,
        }
    }
}

/// A bound a fill breaks: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillError {
    /// The request field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn refuse(field: &'static str, message: String) -> Result<(), FillError> {
    Err(FillError { field, message })
}

/// A count of units between 1 and `max_leg_quantity`.
fn units(field: &'static str, value: i64, limits: &FillLimits) -> Result<(), FillError> {
    if (1..=limits.max_leg_quantity).contains(&value) {
        return Ok(());
    }
    refuse(
        field,
        format!(
            "must be between 1 and {} units (risk.max_leg_quantity), got {value}",
            limits.max_leg_quantity
        ),
    )
}

/// Checks a fill of `quantity` units at `price` against the limits: 1 ≤ quantity ≤
/// `max_leg_quantity`, 0 < price ≤ `max_price`, quantity × price ≤ `max_leg_notional`, and at
/// most `max_exit_orders_per_leg` exit orders of the freeze quantity (in whole lots).
pub fn check_fill(
    quantity: i64,
    price: f64,
    freeze_qty: Option<i64>,
    lot_size: Option<i64>,
    limits: &FillLimits,
) -> Result<(), FillError> {
    units("quantity", quantity, limits)?;
    if !(price.is_finite() && price > 0.0 && price <= limits.max_price) {
        return refuse(
            "entry_price",
            format!(
                "must be above 0 and at most {} (risk.max_price), got {price}",
                limits.max_price
            ),
        );
    }
    // Both factors are bounded above, so the product is finite.
    let notional = quantity as f64 * price;
    if notional > limits.max_leg_notional {
        return refuse(
            "quantity",
            format!(
                "quantity × entry_price is {notional}, above {} (risk.max_leg_notional)",
                limits.max_leg_notional
            ),
        );
    }
    if let Some(freeze) = freeze_qty {
        units("freeze_qty", freeze, limits)?;
        if let Some(chunk) = max_chunk(Some(freeze), lot_size) {
            // Both are at least 1: no overflow, no division by zero.
            let orders = quantity / chunk + i64::from(quantity % chunk != 0);
            if orders > limits.max_exit_orders_per_leg {
                return refuse(
                    "freeze_qty",
                    format!(
                        "exiting {quantity} units in orders of at most {chunk} needs {orders} \
                         orders, above {} (risk.max_exit_orders_per_leg)",
                        limits.max_exit_orders_per_leg
                    ),
                );
            }
        }
    }
    if let Some(lot) = lot_size {
        units("lot_size", lot, limits)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: i64, p: f64, freeze: Option<i64>, lot: Option<i64>) -> Result<(), &'static str> {
        check_fill(q, p, freeze, lot, &FillLimits::default()).map_err(|e| e.field)
    }

    #[test]
    fn ordinary_fills_pass() {
        assert_eq!(check(75, 120.5, Some(1800), Some(75)), Ok(()));
        assert_eq!(check(1, 0.05, None, None), Ok(()));
        assert_eq!(check(1_000_000, 10_000.0, None, None), Ok(()));
        // 200 orders of 5000: exactly the limit.
        assert_eq!(check(1_000_000, 1.0, Some(5000), None), Ok(()));
    }

    #[test]
    fn quantity_and_price_are_bounded() {
        assert_eq!(check(0, 100.0, None, None), Err("quantity"));
        assert_eq!(check(-5, 100.0, None, None), Err("quantity"));
        assert_eq!(check(i64::MAX, 100.0, None, None), Err("quantity"));
        assert_eq!(check(1_000_001, 1.0, None, None), Err("quantity"));
        for p in [0.0, -1.0, 1e300, 10_000_000.01, f64::NAN, f64::INFINITY] {
            assert_eq!(check(1, p, None, None), Err("entry_price"), "{p}");
        }
        assert_eq!(check(1, 10_000_000.0, None, None), Ok(()));
    }

    #[test]
    fn notional_is_bounded() {
        // 1 000 000 × 10 001 = 1.0001e10.
        assert_eq!(check(1_000_000, 10_001.0, None, None), Err("quantity"));
        let tight = FillLimits {
            max_leg_notional: 1000.0,
            ..FillLimits::default()
        };
        assert!(check_fill(10, 100.0, None, None, &tight).is_ok());
        assert_eq!(
            check_fill(11, 100.0, None, None, &tight).map_err(|e| e.field),
            Err("quantity")
        );
    }

    #[test]
    fn exit_orders_per_leg_are_bounded() {
        // The reported case: 3 000 000 units with a freeze quantity of 1.
        assert_eq!(check(3_000_000, 1.0, Some(1), None), Err("quantity"));
        assert_eq!(check(201, 1.0, Some(1), None), Err("freeze_qty"));
        assert_eq!(check(200, 1.0, Some(1), None), Ok(()));
        // A freeze of 1800 with lots of 75 sends 1800 a time: 360 000 / 1800 = 200 orders.
        assert_eq!(check(360_000, 1.0, Some(1800), Some(75)), Ok(()));
        assert_eq!(check(360_075, 1.0, Some(1800), Some(75)), Err("freeze_qty"));
        let e = check_fill(201, 1.0, Some(1), None, &FillLimits::default()).unwrap_err();
        assert!(e.message.contains("needs 201 orders"), "{}", e.message);
        assert_eq!(check(10, 1.0, Some(0), None), Err("freeze_qty"));
        assert_eq!(check(10, 1.0, None, Some(0)), Err("lot_size"));
        assert_eq!(check(10, 1.0, None, Some(i64::MAX)), Err("lot_size"));
    }
}
