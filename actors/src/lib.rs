//! The supervisor's actor tree, the OpenAlgo wire types and client, and pure domain logic.

pub mod domain;
pub mod openalgo;
