//! A fault-injecting TCP proxy for slow links (this kernel has no `tc netem`): every chunk
//! of bytes is held for a delay plus random jitter before it is passed on, in order, in
//! both directions. The delay can change while connections are open.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::Rng as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Default)]
struct Faults {
    delay_ms: AtomicU64,
    jitter_ms: AtomicU64,
}

/// Listens on a free loopback port and forwards every connection to `target`.
pub struct Proxy {
    pub listen: SocketAddr,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        Proxy::start_on("127.0.0.1", target).await
    }

    /// A proxy listening on a free port of `host` (any 127.x.y.z is local).
    pub async fn start_on(host: &str, target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind((host, 0))
            .await
            .with_context(|| format!("binding the proxy on {host}"))?;
        let listen = listener.local_addr()?;
        let faults = Arc::new(Faults::default());
        let shared = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let faults = shared.clone();
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let (ri, wi) = inbound.into_split();
                        let (ro, wo) = outbound.into_split();
                        tokio::spawn(pump(ri, wo, faults.clone()));
                        tokio::spawn(pump(ro, wi, faults));
                    }
                });
            }
        });
        Ok(Proxy {
            listen,
            faults,
            task,
        })
    }

    /// Every chunk waits `delay` plus up to `jitter` more (in each direction).
    pub fn set_latency(&self, delay: Duration, jitter: Duration) {
        self.faults
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        self.faults
            .jitter_ms
            .store(jitter.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk released at its due time; due times never go
/// backwards, so jitter delays but never reorders.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<Faults>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut last_due = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = faults.delay_ms.load(Ordering::SeqCst);
        let jitter = faults.jitter_ms.load(Ordering::SeqCst);
        let extra = if jitter > 0 {
            rand::rng().random_range(0..=jitter)
        } else {
            0
        };
        let due = (Instant::now() + Duration::from_millis(delay + extra)).max(last_due);
        last_due = due;
        let chunk = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
        if tx.send((due, chunk)).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
