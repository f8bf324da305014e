//! What every actor reports about itself (docs/ARCHITECTURE.md §3.3): a lifecycle state, restarts
//! and its own figures. The admin page and `/api/v1/state` are built only from these answers.

use serde::Serialize;

/// The lifecycle state every actor status carries.
#[derive(utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Lifecycle {
    Starting,
    Running,
    Degraded,
    BackingOff,
    Stopped,
    Faulted,
}

/// Milliseconds elapsed since `t`, for "age" fields.
pub fn age_ms(t: std::time::Instant) -> u64 {
    t.elapsed().as_millis() as u64
}
