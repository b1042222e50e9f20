//! `--metrics-addr`: the node's metrics (see `docs/METRICS.md`) served
//! for Prometheus over HTTP, by `metrics-exporter-prometheus` installed as
//! the process's `metrics` recorder.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

use crate::Failure;

/// Upper bounds of the histogram buckets, in seconds: from a tenth of a
/// millisecond (a probe round trip on one host or a quiet LAN) to two
/// minutes (a WAN suspicion in a large cluster). Set, the histograms
/// render as Prometheus histograms rather than summaries.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Binds `addr` and installs the exporter as the global recorder; every
/// path answers `GET` with the text exposition format. Call it before
/// the node starts, so that the node's metrics are described to it.
pub fn serve(addr: SocketAddr) -> Result<(), Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::runtime(format!("--metrics-addr {addr}: {e}"));
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(BUCKETS)
        .map_err(|e| fail(&e))?
        .install()
        .map_err(|e| fail(&e))
}
