//! DAVIS J and F on hand-made masks whose values are worked out in the comments, the decay bins
//! of short sequences, the sequence rules (object count, void, padding, excluded frames) and the
//! errors. Exact values: tolerance 1e-12.

mod common;

use vssl_eval::Result;
use vssl_eval::metrics::davis::{
    BOUND_TH, BinaryMask, BoundaryScore, Disk, boundary_map, boundary_score, decay_bins,
    evaluate_dataset, evaluate_sequence, f_measure, jaccard, object_count, scored_frames,
    statistics, tolerance_radius,
};

use common::labels;

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-12,
        "{what}: got {got}, want {want}"
    );
}

fn pixel(w: usize, h: usize, x: usize, y: usize) -> BinaryMask {
    BinaryMask::from_fn(w, h, |a, b| (a, b) == (x, y))
}

fn set_pixels(m: &BinaryMask) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for y in 0..m.height() {
        for x in 0..m.width() {
            if m.get(x, y) {
                v.push((x, y));
            }
        }
    }
    v
}

#[test]
fn empty_and_full_masks() -> Result<()> {
    let (w, h) = (30, 20);
    let empty = BinaryMask::zeros(w, h);
    let full = BinaryMask::from_fn(w, h, |_, _| true);
    // both empty: J = 1 (empty union), F = 1 (no boundary on either side)
    close("J(empty, empty)", jaccard(&empty, &empty)?, 1.0);
    close("F(empty, empty)", f_measure(&empty, &empty, BOUND_TH)?, 1.0);
    // a full mask has no boundary pixel (edges are not boundaries), so empty vs full is J = 0
    // but F = 1, as in the official code
    assert_eq!(boundary_map(&full).count(), 0);
    close("J(empty, full)", jaccard(&empty, &full)?, 0.0);
    close("F(empty, full)", f_measure(&empty, &full, BOUND_TH)?, 1.0);
    close("J(full, full)", jaccard(&full, &full)?, 1.0);
    close("F(full, full)", f_measure(&full, &full, BOUND_TH)?, 1.0);
    Ok(())
}

#[test]
fn one_pixel_masks_and_their_boundaries() -> Result<()> {
    let (w, h) = (30, 20);
    // pixel (7, 5): it differs from its east neighbour; (6, 5) from its east, (7, 4) from its
    // south and (6, 4) from its south-east neighbour: a 2x2 boundary block
    let a = pixel(w, h, 7, 5);
    assert_eq!(
        set_pixels(&boundary_map(&a)),
        [(6, 4), (7, 4), (6, 5), (7, 5)]
    );
    close("J same pixel", jaccard(&a, &a)?, 1.0);
    close("F same pixel", f_measure(&a, &a, BOUND_TH)?, 1.0);
    // the diagonal neighbour (8, 6): no overlap (J = 0); radius ceil(0.008·√(20²+30²)) = 1, a
    // 3x3 cross; 3 of the 4 boundary pixels of each lie within the cross of the other's:
    // P = R = 3/4
    assert_eq!(tolerance_radius(BOUND_TH, h, w)?, 1.0);
    let b = pixel(w, h, 8, 6);
    close("J diagonal", jaccard(&a, &b)?, 0.0);
    let s = boundary_score(&a, &b, BOUND_TH)?;
    close("P diagonal", s.precision, 0.75);
    close("R diagonal", s.recall, 0.75);
    close("F diagonal", s.f, 0.75);
    // far apart: nothing matches, P = R = 0 → F = 0
    let c = pixel(w, h, 25, 15);
    let s = boundary_score(&a, &c, BOUND_TH)?;
    assert_eq!((s.precision, s.recall, s.f), (0.0, 0.0, 0.0));
    // a tolerance of 30 px covers the whole image: everything matches
    close("F far, 30 px", f_measure(&a, &c, 30.0)?, 1.0);
    Ok(())
}

#[test]
fn masks_touching_the_image_edges() -> Result<()> {
    let (w, h) = (30, 20);
    // top-left pixel: only itself (its west/north sides are the image edge)
    assert_eq!(set_pixels(&boundary_map(&pixel(w, h, 0, 0))), [(0, 0)]);
    // bottom-right pixel: never a boundary itself (b[-1, -1] = 0); its west neighbour (last-row
    // rule), north neighbour (last-column rule) and north-west neighbour are
    assert_eq!(
        set_pixels(&boundary_map(&pixel(w, h, 29, 19))),
        [(28, 18), (29, 18), (28, 19)]
    );
    // a strip along the right edge: the boundary is the column left of it, the edge itself is
    // not a boundary
    let right = BinaryMask::from_fn(w, h, |x, _| x >= 25);
    let b = boundary_map(&right);
    assert_eq!(b.count(), h);
    assert!((0..h).all(|y| b.get(24, y)));
    // a strip along the left edge: its own last column
    let left = BinaryMask::from_fn(w, h, |x, _| x < 5);
    let b = boundary_map(&left);
    assert_eq!(b.count(), h);
    assert!((0..h).all(|y| b.get(4, y)));
    // a strip along the bottom edge: the row above it
    let bottom = BinaryMask::from_fn(w, h, |_, y| y >= 15);
    let b = boundary_map(&bottom);
    assert_eq!(b.count(), w);
    assert!((0..w).all(|x| b.get(x, 14)));
    // left strip vs the same strip one column wider: boundaries 1 px apart, within radius 1
    let wider = BinaryMask::from_fn(w, h, |x, _| x < 6);
    close("J strips", jaccard(&left, &wider)?, 100.0 / 120.0);
    close("F strips", f_measure(&left, &wider, BOUND_TH)?, 1.0);
    // two columns apart: outside radius 1, inside radius 2
    let wider2 = BinaryMask::from_fn(w, h, |x, _| x < 7);
    close("F 2 px, r 1", f_measure(&left, &wider2, BOUND_TH)?, 0.0);
    close("F 2 px, r 2", f_measure(&left, &wider2, 2.0)?, 1.0);
    Ok(())
}

#[test]
fn f_special_cases() -> Result<()> {
    let (w, h) = (30, 20);
    let blob = BinaryMask::from_fn(w, h, |x, y| (5..12).contains(&x) && (4..9).contains(&y));
    let empty = BinaryMask::zeros(w, h);
    // no predicted boundary, a GT boundary: P = 1, R = 0
    let s = boundary_score(&blob, &empty, BOUND_TH)?;
    assert_eq!((s.precision, s.recall, s.f), (1.0, 0.0, 0.0));
    // a predicted boundary, no GT boundary: P = 0, R = 1
    let s = boundary_score(&empty, &blob, BOUND_TH)?;
    assert_eq!((s.precision, s.recall, s.f), (0.0, 1.0, 0.0));
    // neither: P = R = F = 1
    let s = boundary_score(&empty, &empty, BOUND_TH)?;
    assert_eq!((s.precision, s.recall, s.f), (1.0, 1.0, 1.0));
    // from counts: 3 of 4 predicted matched, 1 of 2 GT matched → F = 2·0.75·0.5/1.25
    let s = BoundaryScore::from_counts(4, 2, 3, 1);
    close("F from counts", s.f, 0.6);
    Ok(())
}

#[test]
fn disks_match_skimage() -> Result<()> {
    // skimage.morphology.disk(2)
    let want = [
        "00100", //
        "01110", "11111", "01110", "00100",
    ];
    let got: Vec<String> = Disk::new(2.0)?
        .kernel()
        .iter()
        .map(|r| r.iter().map(|&b| if b { '1' } else { '0' }).collect())
        .collect();
    assert_eq!(got, want);
    // radius 8 (854x480): 17x17, the centre row full, the top row a single cell
    let d = Disk::new(tolerance_radius(BOUND_TH, 480, 854)?)?;
    assert_eq!(d.size(), 17);
    assert_eq!(d.kernel()[8].iter().filter(|&&b| b).count(), 17);
    assert_eq!(d.kernel()[0].iter().filter(|&&b| b).count(), 1);
    // radius 2.5: arange(-2.5, 3.5) has 6 values, an even kernel anchored at 3
    let d = Disk::new(2.5)?;
    assert_eq!(d.size(), 6);
    assert_eq!(tolerance_radius(BOUND_TH, 480, 910)?, 9.0);
    assert_eq!(tolerance_radius(BOUND_TH, 480, 1152)?, 10.0);
    assert!(Disk::new(-1.0).is_err());
    assert!(tolerance_radius(-0.1, 10, 10).is_err());
    Ok(())
}

#[test]
fn decay_bins_of_short_sequences() {
    // ids = round(linspace(1, n, 5) + 1e-10) − 1; bin i = ids[i] ..= ids[i+1]
    let want: [(usize, [(usize, usize); 4]); 10] = [
        (1, [(0, 1), (0, 1), (0, 1), (0, 1)]),
        (2, [(0, 1), (0, 2), (1, 2), (1, 2)]),
        (3, [(0, 2), (1, 2), (1, 3), (2, 3)]),
        (4, [(0, 2), (1, 3), (2, 3), (2, 4)]),
        (5, [(0, 2), (1, 3), (2, 4), (3, 5)]),
        (6, [(0, 2), (1, 4), (3, 5), (4, 6)]),
        (7, [(0, 3), (2, 4), (3, 6), (5, 7)]),
        (8, [(0, 3), (2, 5), (4, 6), (5, 8)]),
        (9, [(0, 3), (2, 5), (4, 7), (6, 9)]),
        (10, [(0, 3), (2, 6), (5, 8), (7, 10)]),
    ];
    for (n, bins) in want {
        let got: Vec<(usize, usize)> = decay_bins(n).iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, bins, "n = {n}");
    }
    assert!(decay_bins(0).iter().all(|r| r.is_empty()));
}

#[test]
fn statistics_of_known_sequences() {
    let s = statistics(&[0.7]);
    assert_eq!((s.mean, s.recall, s.decay), (0.7, 1.0, 0.0));
    let s = statistics(&[0.9, 0.3]);
    close("n=2 decay", s.decay, 0.6);
    close("n=2 recall", s.recall, 0.5);
    // bins [0,1], [3,4]: decay = 1 − 0
    let s = statistics(&[1.0, 1.0, 0.5, 0.0, 0.0]);
    close("n=5 mean", s.mean, 0.5);
    close("n=5 recall", s.recall, 0.4); // 0.5 is not > 0.5
    close("n=5 decay", s.decay, 1.0);
    // NaN: ignored by the mean and the decay, counted as "not > 0.5" by the recall
    let s = statistics(&[f64::NAN, 1.0, 0.0, 0.2]);
    close("NaN mean", s.mean, 0.4);
    close("NaN recall", s.recall, 0.25);
    close("NaN decay", s.decay, 1.0 - 0.1); // bins [0,1] and [2,3] (n = 4)
    let s = statistics(&[]);
    assert!(s.mean.is_nan() && s.recall.is_nan() && s.decay.is_nan());
}

#[test]
fn sequence_rules() -> Result<()> {
    // 4 frames of 4x3: object count from the first GT frame (2; the 255 void does not count)
    let f0 = labels(&[&[1, 1, 0, 255], &[0, 0, 2, 2], &[0, 0, 0, 0]]);
    assert_eq!(object_count(&f0), 2);
    // frames 1 and 2 are scored; GT void is background, and a GT id 3 (absent from frame 0) is
    // not an object
    let g1 = labels(&[&[1, 1, 255, 255], &[0, 0, 2, 2], &[3, 3, 0, 0]]);
    let g2 = labels(&[&[1, 0, 0, 0], &[0, 0, 0, 2], &[0, 0, 0, 0]]);
    let p1 = labels(&[&[1, 1, 0, 0], &[0, 0, 0, 0], &[0, 0, 0, 0]]);
    let p2 = labels(&[&[1, 1, 0, 0], &[0, 0, 0, 0], &[0, 0, 0, 0]]);
    // the first and last predictions are never read, even with out-of-range ids
    let junk = labels(&[&[9, 9, 9, 9], &[9, 9, 9, 9], &[9, 9, 9, 9]]);
    let gt = vec![f0.clone(), g1, g2, f0];
    let pred = vec![junk.clone(), p1, p2, junk];
    let r = evaluate_sequence("toy", &gt, &pred, BOUND_TH)?;
    assert_eq!(r.frames, ["00001", "00002"]);
    assert_eq!(r.objects.len(), 2);
    // object 1: frame 1 exact (J 1), frame 2: GT 1 px ⊂ pred 2 px (J 1/2)
    assert_eq!(r.objects[0].j, [1.0, 0.5]);
    // object 2 is never predicted (ids padded with empty masks): J 0
    assert_eq!(r.objects[1].j, [0.0, 0.0]);
    assert_eq!(r.objects[1].f, [0.0, 0.0]);
    close("obj 1 J mean", r.objects[0].j_stats.mean, 0.75);
    assert_eq!(scored_frames(0), 1..1);
    assert_eq!(scored_frames(2), 1..1);
    assert_eq!(scored_frames(5), 1..4);
    Ok(())
}

#[test]
fn errors_name_the_sequence_or_file() -> Result<()> {
    let g = labels(&[&[1, 0], &[0, 0]]);
    let p3 = labels(&[&[3, 0], &[0, 0]]);
    let frames = vec![g.clone(), g.clone(), g.clone()];
    let err = evaluate_sequence("camel", &frames, &[g.clone(), p3, g.clone()], BOUND_TH)
        .expect_err("id 3 with one GT object")
        .to_string();
    assert!(
        err.contains("camel") && err.contains("frame 00001") && err.contains("id 3"),
        "{err}"
    );
    let small = labels(&[&[1]]);
    let err = evaluate_sequence("dog", &frames, &[g.clone(), small, g.clone()], BOUND_TH)
        .expect_err("size mismatch")
        .to_string();
    assert!(err.contains("dog") && err.contains("1x1"), "{err}");
    assert!(evaluate_sequence("x", &frames, &frames[..2], BOUND_TH).is_err());

    // a missing prediction file is named
    let tmp = common::Tmp::new("errors");
    let (root, pred) = (tmp.path().join("davis"), tmp.path().join("pred"));
    let seq = vec![("cows".to_string(), frames.clone(), frames.clone())];
    common::write_davis(&root, &pred, &seq, false);
    std::fs::remove_file(pred.join("cows/00001.png")).expect("remove");
    let davis = vssl_data::dataset::Davis::open(&root, 2017, "480p", None)?;
    let err = evaluate_dataset(&davis, &pred, BOUND_TH)
        .expect_err("missing frame")
        .to_string();
    assert!(
        err.contains("cows/00001.png") && err.contains("missing"),
        "{err}"
    );

    // a prediction of the wrong size, and one with an id the GT does not have, are named too
    let write = |m: &vssl_data::frame::LabelMap| {
        vssl_data::dataset::write_palette_mask(pred.join("cows/00001.png"), m)
    };
    write(&labels(&[&[1, 0, 0], &[0, 0, 0]]))?;
    let err = evaluate_dataset(&davis, &pred, BOUND_TH)
        .expect_err("wrong size")
        .to_string();
    assert!(
        err.contains("cows/00001.png") && err.contains("3x2") && err.contains("2x2"),
        "{err}"
    );
    write(&labels(&[&[1, 0], &[0, 2]]))?;
    let err = evaluate_dataset(&davis, &pred, BOUND_TH)
        .expect_err("id 2 with one GT object")
        .to_string();
    assert!(
        err.contains("cows/00001.png") && err.contains("id 2") && err.contains("1 object"),
        "{err}"
    );
    write(&g)?;
    assert!(evaluate_dataset(&davis, &pred, BOUND_TH).is_ok());
    Ok(())
}

#[test]
fn davis_2016_gray_masks_are_one_object() -> Result<()> {
    // GT written as mode-L {0, 255}, predictions as palette ids: same scores as palette GT
    let g0 = labels(&[&[0, 1, 1, 0], &[0, 1, 1, 0], &[0, 0, 0, 0]]);
    let g1 = labels(&[&[0, 0, 1, 1], &[0, 0, 1, 1], &[0, 0, 0, 0]]);
    let p1 = labels(&[&[0, 1, 1, 1], &[0, 0, 1, 1], &[0, 0, 0, 0]]);
    let gt = vec![g0.clone(), g1.clone(), g1, g0];
    let pred = vec![p1.clone(), p1.clone(), p1.clone(), p1];
    let want = evaluate_sequence("s", &gt, &pred, BOUND_TH)?;
    let tmp = common::Tmp::new("gray");
    let (root, pr) = (tmp.path().join("davis"), tmp.path().join("pred"));
    common::write_davis(&root, &pr, &[("s".to_string(), gt, pred)], true);
    assert_eq!(vssl_eval::metrics::davis::detect_year(&root, "480p")?, 2016);
    let davis = vssl_data::dataset::Davis::open(&root, 2016, "480p", None)?;
    let got = evaluate_dataset(&davis, &pr, BOUND_TH)?;
    assert_eq!(got.sequences[0], want);
    close("J", want.objects[0].j[0], 0.8);
    Ok(())
}
