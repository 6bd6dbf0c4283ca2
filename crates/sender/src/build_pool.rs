//! The threads that build and sign messages, beside the event loop.
//!
//! An RSA signature is CPU work: made on the single-threaded event loop
//! that drives the connections it would stall every one of them while it
//! ran, and leave the other cores idle. So signed messages are built here.
//!
//! Why not tokio's blocking pool, which did this before: it hands each job
//! to a thread that parks as soon as the job is done, and with as many jobs
//! allowed in flight as threads the next job only arrives after the event
//! loop has taken the last result. Every message then cost a thread
//! wake-up and a park (futex calls and two context switches; on a virtual
//! machine also the idle vCPU's exit and re-entry). Here jobs wait in a
//! queue of the pool's own, up to twice as many as there are threads, so a
//! busy thread goes straight from one message to the next.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use tokio::sync::{Semaphore, oneshot};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of builder threads and their queue.
pub(crate) struct BuildPool {
    /// `None` when the operating system refused every thread: jobs then run
    /// where they are submitted, slower but correct.
    jobs: Option<flume::Sender<Job>>,
    /// Jobs queued or running. Bounded, so the pool never holds more than a
    /// few messages beyond those its threads are building.
    slots: Semaphore,
}

impl BuildPool {
    /// Starts `threads` builder threads (at least one). They end when the
    /// pool is dropped and the jobs already queued are done.
    pub(crate) fn start(threads: usize) -> Self {
        let (jobs, queue) = flume::unbounded::<Job>();
        let mut started = 0;
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("lp-build-{n}"))
                .spawn(move || {
                    for job in queue.iter() {
                        job();
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    tracing::warn!(error = %e, started, "cannot start a message builder thread");
                    break;
                }
            }
        }
        Self {
            jobs: (started > 0).then_some(jobs),
            slots: Semaphore::new(2 * started.max(1)),
        }
    }

    /// `job`'s result, computed on one of the pool's threads once a slot is
    /// free. A panic in `job` is resumed here, as if it had run here.
    /// `None` only if the job was lost without running to its end, which
    /// a thread that catches every panic never does.
    pub(crate) async fn run<T, F>(&self, job: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let Some(jobs) = &self.jobs else {
            return Some(job());
        };
        let _slot = self.slots.acquire().await.expect("never closed");
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The submitter may have gone (a worker stopping): then the
            // result is simply dropped.
            let _ = tx.send(catch_unwind(AssertUnwindSafe(job)));
        });
        jobs.send(job).ok()?;
        match rx.await.ok()? {
            Ok(built) => Some(built),
            Err(panic) => resume_unwind(panic),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread::ThreadId;

    use super::*;

    /// Submits `n` jobs at once, each returning its number squared and the
    /// thread it ran on; the results in submission order.
    async fn run_many(pool: Arc<BuildPool>, n: usize) -> Vec<(usize, ThreadId)> {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let pool = Arc::clone(&pool);
            set.spawn(async move {
                let done = pool.run(move || (i * i, std::thread::current().id()));
                (i, done.await)
            });
        }
        let mut out = vec![None; n];
        while let Some(joined) = set.join_next().await {
            let (i, done) = joined.expect("no task panics");
            out[i] = done;
        }
        out.into_iter().map(|r| r.expect("every job ran")).collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_run_off_the_event_loop_and_every_result_comes_back() {
        let here = std::thread::current().id();
        let results = run_many(Arc::new(BuildPool::start(2)), 50).await;
        assert_eq!(results.len(), 50);
        for (i, (square, thread)) in results.into_iter().enumerate() {
            assert_eq!(square, i * i);
            assert_ne!(thread, here, "job {i} ran on the event loop");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_job_panics_its_caller_and_the_pool_goes_on() {
        let pool = Arc::new(BuildPool::start(1));
        let p = Arc::clone(&pool);
        let failed = tokio::spawn(async move { p.run(|| -> u32 { panic!("bad message") }).await })
            .await
            .expect_err("the caller panics");
        assert!(failed.is_panic());
        assert_eq!(pool.run(|| 7).await, Some(7));
    }
}
