//! The consumer actor of one (Kafka table, topic, partition).
//!
//! It owns the running pipeline task and its stop signal, and tells its supervisor when
//! the task ends and how. Stopping finishes the open block before the actor goes.

use actix::prelude::*;
use tokio::sync::watch;

use super::pipeline::PartitionJob;
use super::status::ConsumerKey;

/// Sent to the supervisor when a consumer's work ends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConsumerExited {
    pub key: ConsumerKey,
    pub generation: u64,
    pub error: Option<String>,
}

/// Asks a consumer to finish its open block and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopConsumer;

pub struct ConsumerActor {
    job: Option<PartitionJob>,
    generation: u64,
    runtime: tokio::runtime::Handle,
    supervisor: Recipient<ConsumerExited>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ConsumerActor {
    pub fn new(
        job: PartitionJob,
        generation: u64,
        runtime: tokio::runtime::Handle,
        supervisor: Recipient<ConsumerExited>,
    ) -> ConsumerActor {
        let (stop, _) = watch::channel(false);
        ConsumerActor {
            job: Some(job),
            generation,
            runtime,
            supervisor,
            stop,
            task: None,
        }
    }
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        let Some(job) = self.job.take() else {
            return;
        };
        let key = job.key.clone();
        let generation = self.generation;
        let supervisor = self.supervisor.clone();
        let stop = self.stop.subscribe();
        // The pipeline decodes and runs queries: it runs on the multi-threaded runtime,
        // not on this actor's single-threaded arbiter.
        self.task = Some(self.runtime.spawn(async move {
            let error = job.run(stop).await.err().map(|e| e.to_string());
            supervisor.do_send(ConsumerExited {
                key,
                generation,
                error,
            });
        }));
    }
}

impl Handler<StopConsumer> for ConsumerActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: StopConsumer, _ctx: &mut Self::Context) -> Self::Result {
        let _ = self.stop.send(true);
        let task = self.task.take();
        Box::pin(
            async move {
                if let Some(task) = task {
                    let _ = task.await;
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
