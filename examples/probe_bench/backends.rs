//! The `serve` role: endpoints FROM..TO at their bench addresses, served by
//! `testkit::bulk` (its line protocol: `count`, `kill I J ...`; EOF ends the process).

use crate::common::endpoint;

pub fn serve(from: usize, to: usize) -> std::io::Result<()> {
    let endpoints: Vec<_> = (from..to).map(endpoint).collect();
    testkit::bulk::serve_stdio(from, &endpoints)
}
