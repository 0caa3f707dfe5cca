//! A prefetching loader: worker threads make samples ahead of the consumer into a bounded
//! queue, and batches come out in order.
//!
//! - **Order and randomness.** Epoch `e` visits the dataset in the permutation drawn from
//!   [`sample_rng`]`(seed, e, u64::MAX)` (Fisher–Yates, written out here so it never changes with
//!   the `rand` version); sample `i` is made with its own stream `sample_rng(seed, e, i)`. Batches
//!   are assembled in permutation order, so the batches are the same bit for bit whatever the
//!   number of workers (0 = make samples on the calling thread).
//! - **Bounded memory.** Workers claim positions of the permutation in order, and may claim a
//!   position only while it is fewer than `queue_depth` batches ahead of the first sample not yet
//!   handed out. At most `queue_depth × batch_size` samples are therefore being made, queued or
//!   waiting in the reorder buffer, whatever the dataset size (plus the batch the caller holds).
//! - **drop_last** as the reference (`DataLoader(..., drop_last=True)`): the last incomplete
//!   batch is dropped unless [`LoaderConfig::drop_last`] is false.
//! - **Errors.** An error returned by `make` (or a panic in it, turned into an error) is yielded
//!   in place of the batch that holds that sample, and the epoch ends there. Skipping bad inputs
//!   is the dataset's job (see [`crate::dataset::VideoCollection::open_usable`]), so an error
//!   reaching the loader is a real one.
//! - **Shutdown.** Dropping the epoch iterator, at any point, stops the workers (they finish the
//!   sample in hand) and joins them.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::rng::sample_rng;
use crate::{Error, Result};

/// Makes sample `index` of epoch `epoch` from its own random stream.
pub type MakeFn<T> = Arc<dyn Fn(u64, usize, &mut ChaCha8Rng) -> Result<T> + Send + Sync>;

/// How a [`Loader`] batches and prefetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch (≥ 1).
    pub batch_size: usize,
    /// Worker threads; 0 makes the samples on the consumer's thread.
    pub workers: usize,
    /// Batches that may be made ahead of the consumer (≥ 1); bounds memory.
    pub queue_depth: usize,
    /// Run seed.
    pub seed: u64,
    /// Visit the samples in a per-epoch random permutation (the reference's `shuffle=True`);
    /// false visits them in index order.
    pub shuffle: bool,
    /// Drop the last incomplete batch (the reference's `drop_last=True`).
    pub drop_last: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            workers: 2,
            queue_depth: 2,
            seed: 0,
            shuffle: true,
            drop_last: true,
        }
    }
}

/// A dataset of `len` samples made by a function, batched and prefetched.
pub struct Loader<T> {
    len: usize,
    cfg: LoaderConfig,
    make: MakeFn<T>,
}

impl<T> std::fmt::Debug for Loader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("len", &self.len)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Loader<T> {
    /// A shuffling, `drop_last` loader over `len` samples made by `make`.
    ///
    /// Errors when `batch_size` or `queue_depth` is 0.
    pub fn new(
        len: usize,
        batch_size: usize,
        workers: usize,
        queue_depth: usize,
        seed: u64,
        make: MakeFn<T>,
    ) -> Result<Self> {
        let cfg = LoaderConfig {
            batch_size,
            workers,
            queue_depth,
            seed,
            ..LoaderConfig::default()
        };
        Self::with_config(len, cfg, make)
    }

    /// A loader with every setting given.
    ///
    /// Errors when `batch_size` or `queue_depth` is 0.
    pub fn with_config(len: usize, cfg: LoaderConfig, make: MakeFn<T>) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.queue_depth == 0 {
            return Err(Error::op(
                "Loader::new",
                format!(
                    "batch_size {} and queue_depth {} must be at least 1",
                    cfg.batch_size, cfg.queue_depth
                ),
            ));
        }
        Ok(Self { len, cfg, make })
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the loader has no sample.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        if self.cfg.drop_last {
            self.len / self.cfg.batch_size
        } else {
            self.len.div_ceil(self.cfg.batch_size)
        }
    }

    /// The order in which epoch `epoch` visits the samples.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.cfg.shuffle {
            shuffle(&mut order, &mut sample_rng(self.cfg.seed, epoch, u64::MAX));
        }
        order
    }

    /// The batches of epoch `epoch`, in order, made by the workers ahead of time.
    pub fn epoch(&self, epoch: u64) -> Batches<T> {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch `first_batch` on (a resumed run): the same
    /// batches, bit for bit, as [`Loader::epoch`] yields from that position, without making the
    /// samples of the batches before it. Past the end, the iterator is empty.
    pub fn epoch_from(&self, epoch: u64, first_batch: usize) -> Batches<T> {
        let mut order = self.permutation(epoch);
        let total = if self.cfg.drop_last {
            self.len / self.cfg.batch_size * self.cfg.batch_size
        } else {
            self.len
        };
        order.truncate(total);
        let skip = first_batch.saturating_mul(self.cfg.batch_size).min(total);
        order.drain(..skip);
        let total = order.len();
        let order: Arc<[usize]> = order.into();
        let window = self.cfg.queue_depth.saturating_mul(self.cfg.batch_size);
        let workers = self.cfg.workers.min(total);
        let pool = (workers > 0).then(|| {
            let shared = Arc::new(Shared {
                state: Mutex::new(State {
                    next_claim: 0,
                    limit: window,
                    stop: false,
                }),
                cv: Condvar::new(),
            });
            let (tx, rx) = sync_channel(window);
            let handles = (0..workers)
                .filter_map(|w| {
                    let job = Job {
                        shared: Arc::clone(&shared),
                        tx: tx.clone(),
                        order: Arc::clone(&order),
                        make: Arc::clone(&self.make),
                        seed: self.cfg.seed,
                        epoch,
                    };
                    std::thread::Builder::new()
                        .name(format!("vssl-loader-{w}"))
                        .spawn(move || job.run())
                        .map_err(|e| tracing::warn!("loader: cannot start worker {w}: {e}"))
                        .ok()
                })
                .collect::<Vec<_>>();
            Pool {
                shared,
                rx: Some(rx),
                reorder: BTreeMap::new(),
                handles,
            }
        });
        // If no worker could start, fall back to making samples inline.
        let pool = pool.filter(|p| !p.handles.is_empty());
        Batches {
            epoch,
            seed: self.cfg.seed,
            batch_size: self.cfg.batch_size,
            window,
            order,
            next: 0,
            make: Arc::clone(&self.make),
            pool,
            done: false,
        }
    }
}

/// Fisher–Yates with an unbiased bounded draw from 64-bit words (rejection sampling), written
/// out so that the permutation depends only on the ChaCha stream.
fn shuffle(v: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let bound = i as u64 + 1;
        // largest multiple of `bound` that fits in u64: reject draws at or above it
        let zone = u64::MAX - (u64::MAX % bound + 1) % bound;
        let j = loop {
            let x = rng.next_u64();
            if x <= zone {
                break (x % bound) as usize;
            }
        };
        v.swap(i, j);
    }
}

struct State {
    /// Next position of the order to hand to a worker.
    next_claim: usize,
    /// Workers may claim positions below this.
    limit: usize,
    /// Set when the consumer goes away or the epoch failed.
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }
}

/// What one worker thread needs.
struct Job<T> {
    shared: Arc<Shared>,
    tx: SyncSender<(usize, Result<T>)>,
    order: Arc<[usize]>,
    make: MakeFn<T>,
    seed: u64,
    epoch: u64,
}

impl<T> Job<T> {
    fn run(self) {
        loop {
            let pos = {
                let mut st = self.shared.lock();
                loop {
                    if st.stop || st.next_claim >= self.order.len() {
                        return;
                    }
                    if st.next_claim < st.limit {
                        st.next_claim += 1;
                        break st.next_claim - 1;
                    }
                    st = match self.shared.cv.wait(st) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                }
            };
            let item = make_one(&self.make, self.seed, self.epoch, self.order[pos]);
            if self.tx.send((pos, item)).is_err() {
                return; // the consumer is gone
            }
        }
    }
}

/// Makes one sample with its own random stream; a panic becomes an error.
fn make_one<T>(make: &MakeFn<T>, seed: u64, epoch: u64, index: usize) -> Result<T> {
    let mut rng = sample_rng(seed, epoch, index as u64);
    catch_unwind(AssertUnwindSafe(|| make(epoch, index, &mut rng))).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(Error::op(
            "Loader",
            format!("making sample {index} of epoch {epoch} panicked: {msg}"),
        ))
    })
}

struct Pool<T> {
    shared: Arc<Shared>,
    rx: Option<Receiver<(usize, Result<T>)>>,
    /// Samples that arrived before the ones the consumer waits for.
    reorder: BTreeMap<usize, Result<T>>,
    handles: Vec<JoinHandle<()>>,
}

impl<T> Pool<T> {
    /// The sample at position `pos`, waiting for it.
    fn take(&mut self, pos: usize) -> Result<T> {
        loop {
            if let Some(item) = self.reorder.remove(&pos) {
                return item;
            }
            let received = self.rx.as_ref().map(Receiver::recv);
            match received {
                Some(Ok((p, item))) => {
                    self.reorder.insert(p, item);
                }
                _ => {
                    return Err(Error::op(
                        "Loader",
                        format!("the workers stopped before sample position {pos} was made"),
                    ));
                }
            }
        }
    }

    fn shutdown(&mut self) {
        self.shared.stop();
        self.rx = None; // a worker blocked on send (cannot happen within the window) wakes up
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                tracing::warn!("loader: a worker thread panicked outside `make`");
            }
        }
        self.reorder.clear();
    }
}

/// The batches of one epoch (an iterator of `Result<Vec<T>>`); see the [module docs](self).
pub struct Batches<T> {
    epoch: u64,
    seed: u64,
    batch_size: usize,
    window: usize,
    order: Arc<[usize]>,
    /// Next position to hand out.
    next: usize,
    make: MakeFn<T>,
    pool: Option<Pool<T>>,
    done: bool,
}

impl<T> std::fmt::Debug for Batches<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("epoch", &self.epoch)
            .field("next", &self.next)
            .field("total", &self.order.len())
            .finish_non_exhaustive()
    }
}

impl<T> Batches<T> {
    /// Batches not yet handed out.
    pub fn remaining(&self) -> usize {
        if self.done {
            0
        } else {
            (self.order.len() - self.next).div_ceil(self.batch_size)
        }
    }

    fn fail(&mut self, e: Error) -> Option<Result<Vec<T>>> {
        self.done = true;
        if let Some(p) = self.pool.as_mut() {
            p.shutdown();
        }
        Some(Err(e))
    }
}

impl<T> Iterator for Batches<T> {
    type Item = Result<Vec<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next >= self.order.len() {
            self.done = true;
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let mut batch = Vec::with_capacity(end - self.next);
        for pos in self.next..end {
            let item = match self.pool.as_mut() {
                Some(pool) => pool.take(pos),
                None => make_one(&self.make, self.seed, self.epoch, self.order[pos]),
            };
            match item {
                Ok(v) => batch.push(v),
                Err(e) => return self.fail(e),
            }
        }
        self.next = end;
        if let Some(pool) = &self.pool {
            pool.shared.lock().limit = self.next.saturating_add(self.window);
            pool.shared.cv.notify_all();
        }
        Some(Ok(batch))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining()))
    }
}

impl<T> Drop for Batches<T> {
    fn drop(&mut self) {
        if let Some(p) = self.pool.as_mut() {
            p.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shuffle_is_a_permutation_and_depends_on_the_stream() {
        let mut a: Vec<usize> = (0..100).collect();
        shuffle(&mut a, &mut ChaCha8Rng::seed_from_u64(1));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut b: Vec<usize> = (0..100).collect();
        shuffle(&mut b, &mut ChaCha8Rng::seed_from_u64(2));
        assert_ne!(a, b);
    }
}
