//! Integration tests of the whole service: one test binary with modules.

mod sim;
