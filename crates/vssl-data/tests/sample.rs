//! Frame-pair and ρ-clip sampling: the reference's distribution and determinism.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)] // tests panic on failure

use vssl_data::rng::sample_rng;
use vssl_data::sample::{clip_indices, pair_indices, reference_frame_size};

#[test]
fn long_videos_give_every_forward_gap_from_1_to_50() {
    let mut seen = [0usize; 51];
    for n in [52usize, 60, 300] {
        for i in 0..4000 {
            let (a, b) = pair_indices(n, &mut sample_rng(11, n as u64, i)).unwrap();
            assert!(b > a && b - a <= 50, "n={n}: ({a}, {b})");
            assert!(
                a <= n - 1 - 50,
                "start {a} leaves room for 50 frames in {n}"
            );
            assert!(b < n);
            seen[b - a] += 1;
        }
    }
    assert!(
        seen[1..].iter().all(|&c| c > 0),
        "every gap 1..=50 occurs: {seen:?}"
    );
    // 12000 draws over 50 gaps: about 240 each.
    assert!(
        seen[1..].iter().all(|&c| (150..=350).contains(&c)),
        "{seen:?}"
    );
}

#[test]
fn short_videos_draw_independently_with_reversals_and_ties() {
    for n in [2usize, 10, 51] {
        let (mut rev, mut eq, mut fwd) = (0, 0, 0);
        let mut hit_last = false;
        for i in 0..3000 {
            let (a, b) = pair_indices(n, &mut sample_rng(5, 0, i)).unwrap();
            assert!(a < n && b < n);
            hit_last |= a == n - 1 || b == n - 1;
            match a.cmp(&b) {
                std::cmp::Ordering::Greater => rev += 1,
                std::cmp::Ordering::Equal => eq += 1,
                std::cmp::Ordering::Less => fwd += 1,
            }
        }
        assert!(
            rev > 0 && eq > 0 && fwd > 0,
            "n={n}: {rev} reversed, {eq} equal, {fwd} forward"
        );
        assert!(hit_last, "frame_end itself is drawn");
        // P(equal) = 1/n
        let p = eq as f64 / 3000.0;
        assert!((p - 1.0 / n as f64).abs() < 0.03, "n={n}: P(equal) = {p}");
    }
    assert_eq!(pair_indices(1, &mut sample_rng(0, 0, 0)).unwrap(), (0, 0));
    assert!(pair_indices(0, &mut sample_rng(0, 0, 0)).is_err());
}

#[test]
fn pairs_and_clips_are_deterministic_per_sample() {
    let draw = |i| pair_indices(1000, &mut sample_rng(3, 1, i)).unwrap();
    assert_eq!(draw(7), draw(7));
    let distinct: std::collections::HashSet<_> = (0..20).map(draw).collect();
    assert!(distinct.len() > 15);
    let c = |i| clip_indices(500, 8, 2, 4, &mut sample_rng(3, 1, i)).unwrap();
    assert_eq!(c(9), c(9));
    assert_ne!(c(9), c(10));
}

#[test]
fn clips_are_sorted_strided_and_cover_the_video() {
    let (n, len, stride) = (40usize, 4usize, 3usize); // span 10: starts 0..=30
    let mut starts = vec![0usize; 31];
    for i in 0..3000 {
        let clips = clip_indices(n, len, 3, stride, &mut sample_rng(1, 2, i)).unwrap();
        assert_eq!(clips.len(), 3);
        for w in clips.windows(2) {
            assert!(w[0][0] <= w[1][0], "sorted by start: {clips:?}");
        }
        for c in &clips {
            assert_eq!(c.len(), len);
            assert!(c.windows(2).all(|p| p[1] == p[0] + stride));
            assert!(*c.last().unwrap() < n);
            starts[c[0]] += 1;
        }
    }
    assert!(
        starts.iter().all(|&s| s > 150),
        "uniform starts over 0..=30: {starts:?}"
    );
    // exactly fitting video: the only start is 0
    assert_eq!(
        clip_indices(10, 4, 2, 3, &mut sample_rng(0, 0, 0)).unwrap(),
        vec![vec![0, 3, 6, 9]; 2]
    );
}

#[test]
fn too_short_videos_and_bad_arguments_are_errors() {
    let e = clip_indices(9, 4, 2, 3, &mut sample_rng(0, 0, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("9 frames") && e.contains("10 frames"), "{e}");
    assert!(clip_indices(9, 0, 2, 3, &mut sample_rng(0, 0, 0)).is_err());
    assert!(clip_indices(9, 2, 0, 3, &mut sample_rng(0, 0, 0)).is_err());
    assert!(clip_indices(9, 2, 2, 0, &mut sample_rng(0, 0, 0)).is_err());
}

#[test]
fn frame_size_floors_to_multiples_of_64() {
    assert_eq!(reference_frame_size(1280, 720), (1280, 704));
    assert_eq!(reference_frame_size(854, 480), (832, 448));
    assert_eq!(reference_frame_size(63, 127), (64, 64));
    assert_eq!(reference_frame_size(128, 64), (128, 64));
}
