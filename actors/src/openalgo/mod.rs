//! OpenAlgo wire types: the market-data feed messages and the REST client. docs/openalgo.md
//! describes the formats they rely on.

pub mod feed;
pub mod lenient;
pub mod rest;
