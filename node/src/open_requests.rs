//! The gRPC requests a node is serving right now, by method and age: a shutdown that
//! waits on an open request names it instead of hanging without a word.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Open requests, shared by every connection of the server.
#[derive(Clone, Default)]
pub struct OpenRequests {
    next: Arc<AtomicU64>,
    open: Arc<Mutex<BTreeMap<u64, (String, Instant)>>>,
}

impl OpenRequests {
    /// The open requests, oldest first: method path and how long it has been open.
    pub fn list(&self) -> Vec<(String, Duration)> {
        let open = match self.open.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        open.values()
            .map(|(path, since)| (path.clone(), since.elapsed()))
            .collect()
    }

    fn open(&self, path: String) -> Guard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, (path, Instant::now()));
        }
        Guard {
            id,
            requests: self.clone(),
        }
    }
}

/// Closes its request when the response is ready or the request is dropped.
struct Guard {
    id: u64,
    requests: OpenRequests,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut open) = self.requests.open.lock() {
            open.remove(&self.id);
        }
    }
}

impl<S> tower_layer::Layer<S> for OpenRequests {
    type Service = Tracked<S>;
    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            requests: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    requests: OpenRequests,
}

impl<S, B> tower_service::Service<tonic::codegen::http::Request<B>> for Tracked<S>
where
    S: tower_service::Service<tonic::codegen::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> Self::Future {
        let guard = self.requests.open(request.uri().path().to_string());
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            drop(guard);
            result
        })
    }
}
