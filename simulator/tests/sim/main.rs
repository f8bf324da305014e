//! Conformance tests of the gateway simulator (`cargo test -p simulator`): one test binary that
//! drives the simulator over its REST, feed and control ports, as a gateway client would.

mod broker;
mod client;
mod control;
mod feed;
mod rest;
