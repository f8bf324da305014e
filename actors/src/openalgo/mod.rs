//! OpenAlgo wire types: the market-data feed messages and the REST client.

pub mod feed;
pub mod lenient;
pub mod rest;
