//! Integration tests of the whole service: one test binary, one module per capability.

mod accounts;
mod config;
mod foundation;
mod helpers;
mod migrations;
