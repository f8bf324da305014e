//! The supervisor's actor tree, the OpenAlgo wire types and client, and pure domain logic.

pub mod accounts;
pub mod calendar;
pub mod chain;
pub mod db;
pub mod domain;
pub mod feed;
pub mod openalgo;
pub mod order_events;
pub mod orders;
pub mod positions;
pub mod risk;
pub mod secrets;
pub mod status;
pub mod supervised;
pub mod supervisor;
