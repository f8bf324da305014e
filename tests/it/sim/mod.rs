//! Conformance tests of the gateway simulator (`cargo test --test it sim`).

mod broker;
pub mod client;
mod control;
mod feed;
mod rest;
