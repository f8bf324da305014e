//! The supervisor's actor tree, the OpenAlgo wire types and client, and pure domain logic.

pub mod calendar;
pub mod clock;
pub mod domain;
pub mod feed;
pub mod openalgo;
pub mod status;
mod supervised;
