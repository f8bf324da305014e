//! The supervisor's actor tree, the OpenAlgo wire types and client, and pure domain logic.

pub mod domain;
pub mod feed;
pub mod openalgo;
pub mod orders;
pub mod positions;
pub mod risk;
pub mod status;
mod supervised;
