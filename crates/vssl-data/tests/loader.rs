//! The prefetching loader: determinism across worker counts, epoch permutations, drop_last,
//! bounded memory, early drop without hanging, error propagation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use vssl_data::loader::{Loader, LoaderConfig, MakeFn};
use vssl_data::{Error, Result};

/// A sample: (dataset index, epoch, two random words). The worker sleeps a random few hundred
/// microseconds first, so that samples finish out of order when there are several workers.
type Item = (usize, u64, u64, u64);

fn jittery_make() -> MakeFn<Item> {
    Arc::new(|epoch, index, rng: &mut ChaCha8Rng| {
        let a = rng.next_u64();
        let b = rng.next_u64();
        std::thread::sleep(Duration::from_micros(a % 400));
        Ok((index, epoch, a, b))
    })
}

fn collect(loader: &Loader<Item>, epoch: u64) -> Result<Vec<Vec<Item>>> {
    loader.epoch(epoch).collect()
}

#[test]
fn same_seed_gives_the_same_batches_whatever_the_worker_count() -> Result<()> {
    let reference = collect(&Loader::new(37, 4, 0, 2, 7, jittery_make())?, 3)?;
    assert_eq!(
        reference.len(),
        9,
        "37 samples, batch 4, drop_last: 9 batches"
    );
    assert!(reference.iter().all(|b| b.len() == 4));
    for workers in [1, 2, 4] {
        let loader = Loader::new(37, 4, workers, 2, 7, jittery_make())?;
        let got = collect(&loader, 3)?;
        assert_eq!(got, reference, "workers = {workers}");
        // and again with the same loader (threads restarted per epoch)
        assert_eq!(
            collect(&loader, 3)?,
            reference,
            "workers = {workers}, second pass"
        );
    }
    // the batches follow the epoch permutation, and every sample used its own stream
    let loader = Loader::new(37, 4, 2, 2, 7, jittery_make())?;
    let perm = loader.permutation(3);
    let order: Vec<usize> = reference.iter().flatten().map(|it| it.0).collect();
    assert_eq!(order, perm[..36]);
    let mut distinct: Vec<u64> = reference.iter().flatten().map(|it| it.2).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 36, "samples drew from distinct streams");
    assert!(reference.iter().flatten().all(|it| it.1 == 3));
    Ok(())
}

#[test]
fn an_epoch_resumed_mid_way_yields_the_remaining_batches_bit_for_bit() -> Result<()> {
    let full = collect(&Loader::new(37, 4, 0, 2, 7, jittery_make())?, 5)?;
    for (workers, first) in [(0, 3), (2, 3), (2, 8), (2, 9), (3, 20)] {
        let loader = Loader::new(37, 4, workers, 2, 7, jittery_make())?;
        let rest: Vec<Vec<Item>> = loader.epoch_from(5, first).collect::<Result<_>>()?;
        let want = &full[first.min(full.len())..];
        assert_eq!(rest, want, "workers = {workers}, first batch {first}");
    }
    Ok(())
}

#[test]
fn epochs_and_seeds_change_the_order_and_shuffle_off_keeps_it() -> Result<()> {
    let loader = Loader::new(50, 5, 2, 2, 1, jittery_make())?;
    let p0 = loader.permutation(0);
    let p1 = loader.permutation(1);
    let mut sorted = p0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>(), "a permutation");
    assert_ne!(p0, p1, "epochs differ");
    assert_ne!(
        p0,
        Loader::new(50, 5, 2, 2, 2, jittery_make())?.permutation(0)
    );
    let b0: Vec<usize> = collect(&loader, 0)?.iter().flatten().map(|i| i.0).collect();
    let b1: Vec<usize> = collect(&loader, 1)?.iter().flatten().map(|i| i.0).collect();
    assert_eq!((b0, b1), (p0, p1));
    // the same index draws different numbers in different epochs
    let e0 = collect(&loader, 0)?;
    let e1 = collect(&loader, 1)?;
    let word = |e: &Vec<Vec<Item>>, idx| e.iter().flatten().find(|i| i.0 == idx).map(|i| i.2);
    assert_ne!(word(&e0, 3), word(&e1, 3));

    let cfg = LoaderConfig {
        batch_size: 5,
        workers: 3,
        queue_depth: 1,
        seed: 1,
        shuffle: false,
        drop_last: true,
    };
    let plain = Loader::with_config(50, cfg, jittery_make())?;
    let order: Vec<usize> = collect(&plain, 4)?.iter().flatten().map(|i| i.0).collect();
    assert_eq!(order, (0..50).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn drop_last_as_the_reference_and_optional() -> Result<()> {
    let cfg = |drop_last| LoaderConfig {
        batch_size: 4,
        workers: 2,
        queue_depth: 2,
        seed: 9,
        shuffle: true,
        drop_last,
    };
    let dropping = Loader::with_config(10, cfg(true), jittery_make())?;
    let sizes: Vec<usize> = collect(&dropping, 0)?.iter().map(Vec::len).collect();
    assert_eq!((sizes, dropping.batches_per_epoch()), (vec![4, 4], 2));
    let keeping = Loader::with_config(10, cfg(false), jittery_make())?;
    let sizes: Vec<usize> = collect(&keeping, 0)?.iter().map(Vec::len).collect();
    assert_eq!((sizes, keeping.batches_per_epoch()), (vec![4, 4, 2], 3));
    // fewer samples than a batch: no batch at all with drop_last
    assert!(collect(&Loader::new(3, 4, 2, 2, 0, jittery_make())?, 0)?.is_empty());
    assert!(Loader::new(3, 0, 2, 2, 0, jittery_make()).is_err());
    assert!(Loader::new(3, 1, 2, 0, 0, jittery_make()).is_err());
    Ok(())
}

/// Counts live samples: +1 when made, −1 when dropped; remembers the maximum.
struct Live {
    now: AtomicUsize,
    max: AtomicUsize,
    made: AtomicUsize,
}

struct Guard(Arc<Live>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn counting_make(live: &Arc<Live>, sleep: Duration) -> MakeFn<Guard> {
    let live = Arc::clone(live);
    Arc::new(move |_, _, _| {
        let n = live.now.fetch_add(1, Ordering::SeqCst) + 1;
        live.max.fetch_max(n, Ordering::SeqCst);
        live.made.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(sleep);
        Ok(Guard(Arc::clone(&live)))
    })
}

fn new_live() -> Arc<Live> {
    Arc::new(Live {
        now: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
        made: AtomicUsize::new(0),
    })
}

#[test]
fn memory_stays_bounded_by_the_queue_depth() -> Result<()> {
    let (batch, depth, workers) = (3, 2, 4);
    let live = new_live();
    let loader = Loader::new(
        300,
        batch,
        workers,
        depth,
        5,
        counting_make(&live, Duration::ZERO),
    )?;
    let mut n = 0;
    for b in loader.epoch(0) {
        let b = b?;
        n += b.len();
        // a slow consumer: the workers fill the window and must wait
        std::thread::sleep(Duration::from_millis(2));
        drop(b);
    }
    assert_eq!(n, 300);
    let max = live.max.load(Ordering::SeqCst);
    // made-and-not-dropped samples: the window (depth batches) plus the batch the consumer holds
    assert!(
        max <= (depth + 1) * batch,
        "{max} samples alive, bound {}",
        (depth + 1) * batch
    );
    assert!(
        max > batch,
        "the workers prefetched ahead ({max} alive at most)"
    );
    assert_eq!(live.now.load(Ordering::SeqCst), 0);
    Ok(())
}

#[test]
fn dropping_the_iterator_early_stops_the_workers_without_hanging() -> Result<()> {
    let live = new_live();
    let live2 = Arc::clone(&live);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let run = || -> Result<usize> {
            let loader = Loader::new(
                10_000,
                4,
                4,
                2,
                3,
                counting_make(&live2, Duration::from_millis(1)),
            )?;
            let mut it = loader.epoch(0);
            let first = it.next().ok_or_else(|| Error::op("test", "no batch"))??;
            drop(it); // workers stop and are joined here
            Ok(first.len())
        };
        let _ = tx.send(run());
    });
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| Error::op("test", "dropping the loader hung"))??;
    assert_eq!(got, 4);
    let made = live.made.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        live.made.load(Ordering::SeqCst),
        made,
        "no sample made after the drop"
    );
    assert!(made <= 4 * 3 + 4, "{made} samples made for one batch of 4");
    Ok(())
}

#[test]
fn errors_and_panics_of_make_are_yielded_and_end_the_epoch() -> Result<()> {
    for workers in [0, 2] {
        let failing: MakeFn<usize> = Arc::new(|_, index, rng: &mut ChaCha8Rng| {
            let _ = rng.random::<u32>();
            match index {
                5 => Err(Error::file("clip5.mp4", "truncated")),
                _ => Ok(index),
            }
        });
        let loader = Loader::new(20, 2, workers, 2, 11, failing)?;
        let pos = loader
            .permutation(0)
            .iter()
            .position(|&i| i == 5)
            .ok_or_else(|| Error::op("test", "5 not in the permutation"))?;
        let results: Vec<Result<Vec<usize>>> = loader.epoch(0).collect();
        assert_eq!(
            results.len(),
            pos / 2 + 1,
            "workers {workers}: ends at the failing batch"
        );
        assert!(results[..pos / 2].iter().all(|r| r.is_ok()));
        let err = results[pos / 2]
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("clip5.mp4") && err.contains("truncated"),
            "{err}"
        );

        let panicking: MakeFn<usize> = Arc::new(|_, index, _| {
            assert!(index != 2, "boom at two");
            Ok(index)
        });
        let loader = Loader::new(6, 6, workers, 1, 0, panicking)?;
        let results: Vec<Result<Vec<usize>>> = loader.epoch(0).collect();
        assert_eq!(results.len(), 1);
        let err = results[0]
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("panicked") && err.contains("boom at two"),
            "{err}"
        );
    }
    Ok(())
}

/// Throughput figure, not a check: `cargo test --profile test -p vssl-data --test loader --
/// --ignored --nocapture throughput`. Each sample is a 2×3×256×256 f32 pair filled from its RNG
/// (about what a frame-pair sample weighs), batch 16, 2 workers.
#[test]
#[ignore = "timing; run by hand"]
fn throughput() -> Result<()> {
    let make: MakeFn<Vec<f32>> = Arc::new(|_, _, rng: &mut ChaCha8Rng| {
        let mut v = vec![0f32; 2 * 3 * 256 * 256];
        let mut x = rng.next_u64();
        for e in v.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *e = (x >> 40) as f32;
        }
        Ok(v)
    });
    for workers in [0, 1, 2] {
        let loader = Loader::new(16 * 64, 16, workers, 2, 0, Arc::clone(&make))?;
        let t = std::time::Instant::now();
        let n = loader
            .epoch(0)
            .try_fold(0usize, |n, b| b.map(|b| n + b.len()))?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "workers {workers}: {n} samples, {:.1} batches/s, {:.0} samples/s",
            n as f64 / 16.0 / s,
            n as f64 / s
        );
    }
    Ok(())
}
