//! Owned background work: every loop a node runs is spawned into a `Tasks`, which stops
//! it (a cancellation token) and waits for it on shutdown, and logs its error once.
//!
//! Ground floor: imports nothing of the crate.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What the log says when a step of a shutdown hit its bound (tests look for it).
pub const SHUTDOWN_OVERRAN: &str = "shutdown step overran";

/// A set of background tasks with one owner: stopped together, each at its next await.
pub struct Tasks {
    name: &'static str,
    token: CancellationToken,
    running: Mutex<JoinSet<()>>,
}

impl Tasks {
    /// `name` says whose tasks these are in the log.
    pub fn new(name: &'static str) -> Tasks {
        Tasks::with_token(name, CancellationToken::new())
    }

    fn with_token(name: &'static str, token: CancellationToken) -> Tasks {
        Tasks {
            name,
            token,
            running: Mutex::new(JoinSet::new()),
        }
    }

    /// Tasks stopped with these (when these stop) or on their own.
    pub fn child(&self, name: &'static str) -> Tasks {
        Tasks::with_token(name, self.token.child_token())
    }

    /// Cancelled once these tasks are told to stop; for a loop that must finish a step
    /// before it looks.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Runs `work` until it ends or these tasks stop; an error it ends with is logged
    /// here, once, with the task's name. Nothing is spawned once stopping.
    pub fn spawn<F, E>(&self, task: &'static str, work: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.spawn_inner(task, work, None);
    }

    /// As `spawn`, on the runtime of `handle`: for owners that live on another runtime
    /// (an actix arbiter) but whose work belongs on the node's multi-threaded one.
    pub fn spawn_on<F, E>(&self, task: &'static str, work: F, handle: &tokio::runtime::Handle)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.spawn_inner(task, work, Some(handle));
    }

    fn spawn_inner<F, E>(
        &self,
        task: &'static str,
        work: F,
        handle: Option<&tokio::runtime::Handle>,
    ) where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        if self.token.is_cancelled() {
            return;
        }
        let token = self.token.clone();
        let owner = self.name;
        let run = async move {
            tokio::select! {
                () = token.cancelled() => {}
                ended = work => {
                    if let Err(error) = ended {
                        tracing::error!(owner, task, %error, "a background task failed");
                    }
                }
            }
        };
        let mut running = match self.running.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Finished tasks leave their result in the set until joined: reap them here, so
        // short tasks spawned over a long life do not pile up.
        while let Some(done) = running.try_join_next() {
            log_panic(owner, done);
        }
        match handle {
            Some(handle) => running.spawn_on(run, handle),
            None => running.spawn(run),
        };
    }

    /// Tells every task to stop and waits for them, at most `timeout`; those still
    /// running then are aborted. How many had to be.
    pub async fn stop(&self, timeout: Duration) -> usize {
        self.token.cancel();
        let mut running = {
            let mut guard = match self.running.lock() {
                Ok(r) => r,
                Err(poisoned) => poisoned.into_inner(),
            };
            std::mem::take(&mut *guard)
        };
        let joined = tokio::time::timeout(timeout, async {
            while let Some(done) = running.join_next().await {
                log_panic(self.name, done);
            }
        })
        .await;
        if joined.is_ok() {
            return 0;
        }
        let left = running.len();
        tracing::warn!(owner = self.name, left, after = ?timeout, "{SHUTDOWN_OVERRAN}: background tasks did not stop; aborting them");
        running.shutdown().await;
        left
    }

    /// How many tasks run (or finished and were not reaped yet).
    pub fn len(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Tasks {
    /// Dropped without a stop (a test, an error path): the tasks must not outlive it.
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn log_panic(owner: &'static str, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(owner, error = %e, "a background task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn stop_ends_every_loop_and_a_child_with_its_parent() {
        let tasks = Tasks::new("test");
        let child = tasks.child("child");
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let ended = Arc::new(AtomicBool::new(false));
        let flag = ended.clone();
        tasks.spawn("forever", async move {
            struct SetOnDrop(Arc<AtomicBool>);
            impl Drop for SetOnDrop {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let _set = SetOnDrop(flag);
            let _ = tx.send(()).await;
            std::future::pending::<Result<(), String>>().await
        });
        child.spawn("also forever", std::future::pending::<Result<(), String>>());
        rx.recv().await.expect("the task started");
        assert_eq!(tasks.stop(Duration::from_secs(5)).await, 0);
        assert!(ended.load(Ordering::SeqCst), "the loop was dropped");
        assert!(child.is_stopping());
        assert_eq!(child.stop(Duration::from_secs(5)).await, 0);
        // Stopped: nothing new starts.
        tasks.spawn("late", async { Ok::<(), String>(()) });
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn finished_tasks_are_reaped() {
        let tasks = Tasks::new("test");
        for _ in 0..10 {
            tasks.spawn("short", async { Err::<(), _>("failed once") });
        }
        tokio::task::yield_now().await;
        let mut waited = 0;
        while tasks.len() > 1 && waited < 100 {
            tokio::task::yield_now().await;
            tasks.spawn("short", async { Ok::<(), String>(()) });
            waited += 1;
        }
        assert!(tasks.len() <= 2, "{} tasks kept", tasks.len());
        assert_eq!(tasks.stop(Duration::from_secs(5)).await, 0);
    }
}
