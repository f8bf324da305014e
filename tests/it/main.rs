//! Integration tests of the whole service: one test binary, one module per capability.

mod accounts;
mod admin;
mod admin_openapi;
mod bench;
mod browser;
mod calendar;
mod chain;
mod concurrency;
mod config;
mod deploy;
mod exits;
mod feed;
mod foundation;
mod guard;
mod helpers;
mod lifecycle;
mod migrations;
mod risk;
