//! Scrapes a node's Prometheus endpoint and reads samples from its text format.

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The body of GET /metrics at `addr` (host:port).
pub async fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the metrics endpoint {addr}"))?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response without a body")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "metrics endpoint answered: {head}"
    );
    Ok(body.to_string())
}

/// The sum of the samples of `name` whose labels include every one of `labels`
/// (`key="value"` pairs); None when there is no such sample.
pub fn sum(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, series_labels) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name || !labels.iter().all(|l| series_labels.contains(l)) {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}
