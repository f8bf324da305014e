//! The supervisor's actor tree, the OpenAlgo wire types and client, and pure domain logic.

pub mod chain;
pub mod domain;
pub mod feed;
pub mod openalgo;
pub mod status;
mod supervised;
