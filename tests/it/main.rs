//! Integration tests of the whole service: one test binary, one module per capability.

mod config;
mod feed;
mod foundation;
mod helpers;
mod migrations;
mod risk;
