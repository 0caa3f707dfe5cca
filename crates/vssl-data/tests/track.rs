//! Patch-tracking geometry: the reference's border rule, θ ↔ box, and the crop that θ makes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)] // tests panic on failure

use candle_core::{Device, IndexOp, Tensor};
use vssl_core::ops::grid::{affine_grid, grid_sample};
use vssl_data::track::{BoxF, box_to_theta, center_to_box, sample_positions, theta_to_box};

#[test]
fn box_shifts_at_left_top_and_truncates_at_right_bottom() {
    // interior: centred, full size
    let b = center_to_box(40.0, 30.5, 32.0, 80.0, 80.0);
    assert_eq!(
        b,
        BoxF {
            x1: 24.0,
            y1: 14.5,
            x2: 56.0,
            y2: 46.5
        }
    );
    // left/top: shifted inward, keeps its size
    let b = center_to_box(5.0, 10.25, 32.0, 80.0, 80.0);
    assert_eq!((b.x1, b.x2, b.y1, b.y2), (0.0, 32.0, 0.0, 32.0));
    // right/bottom: truncated, smaller than 32
    let b = center_to_box(75.0, 79.0, 32.0, 80.0, 80.0);
    assert_eq!((b.x1, b.x2, b.y1, b.y2), (59.0, 80.0, 63.0, 80.0));
    assert_eq!((b.width(), b.height()), (21.0, 17.0));
    // non-square map
    let b = center_to_box(10.0, 10.0, 32.0, 120.0, 20.0);
    assert_eq!((b.y1, b.y2), (0.0, 20.0));
}

#[test]
fn theta_formula_and_round_trip() {
    let b = BoxF {
        x1: 24.0,
        y1: 0.0,
        x2: 56.0,
        y2: 32.0,
    };
    let t = box_to_theta(b, 80.0, 80.0);
    assert_eq!(t, [0.4, 0.0, 0.0, 0.0, 0.4, -0.6]);
    for (cx, cy) in [(3.3f32, 77.1f32), (40.0, 40.0), (79.0, 0.5), (17.25, 60.75)] {
        let b = center_to_box(cx, cy, 32.0, 80.0, 70.0);
        let back = theta_to_box(box_to_theta(b, 80.0, 70.0), 80.0, 70.0).unwrap();
        for (a, z) in [
            (b.x1, back.x1),
            (b.x2, back.x2),
            (b.y1, back.y1),
            (b.y2, back.y2),
        ] {
            assert!((a - z).abs() <= 1e-4, "{b:?} vs {back:?}");
        }
    }
    assert!(theta_to_box([1.0, 0.1, 0.0, 0.0, 1.0, 0.0], 8.0, 8.0).is_err());
    assert!(theta_to_box([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], 0.0, 8.0).is_err());
}

/// Crops `img` [1, C, H, W] with θ of `b` to `out_h × out_w`.
fn crop(img: &Tensor, b: BoxF, out_w: usize, out_h: usize, ac: bool) -> Tensor {
    let (_, c, h, w) = img.dims4().unwrap();
    let t = box_to_theta(b, w as f32, h as f32);
    let theta = Tensor::from_slice(&t, (1, 2, 3), &Device::Cpu).unwrap();
    let grid = affine_grid(&theta, (1, c, out_h, out_w), ac).unwrap();
    grid_sample(img, &grid, ac).unwrap()
}

fn image(h: usize, w: usize) -> Tensor {
    let v: Vec<f32> = (0..2 * h * w)
        .map(|i| ((i * 37) % 101) as f32 / 7.0)
        .collect();
    Tensor::from_vec(v, (1, 2, h, w), &Device::Cpu).unwrap()
}

#[test]
fn theta_crop_equals_slicing_without_align_corners() {
    let img = image(20, 24);
    let b = BoxF {
        x1: 5.0,
        y1: 3.0,
        x2: 17.0,
        y2: 11.0,
    };
    let got = crop(&img, b, 12, 8, false);
    let want = img.i((.., .., 3..11, 5..17)).unwrap();
    let d = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d <= 1e-4, "max diff {d}");
}

#[test]
fn theta_crop_with_align_corners_samples_the_documented_positions() {
    // The reference's convention: align_corners = true; the crop reads the positions of
    // `sample_positions`, a slight shrink of the box towards the origin, not the box's pixels.
    let (h, w) = (20usize, 24usize);
    let img = image(h, w);
    let b = BoxF {
        x1: 5.0,
        y1: 3.0,
        x2: 17.0,
        y2: 11.0,
    };
    let got = crop(&img, b, 12, 8, true)
        .i(0)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let xs = sample_positions(b.x1, b.x2, w, 12, true);
    let ys = sample_positions(b.y1, b.y2, h, 8, true);
    assert!((xs[0] - 5.0 * 23.0 / 24.0).abs() < 1e-9 && (xs[11] - 17.0 * 23.0 / 24.0).abs() < 1e-9);
    let px = img.i(0).unwrap().to_vec3::<f32>().unwrap();
    let bilinear = |c: usize, y: f64, x: f64| {
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (fx, fy) = (x - x0 as f64, y - y0 as f64);
        let at = |yy: usize, xx: usize| {
            if yy < h && xx < w {
                px[c][yy][xx] as f64
            } else {
                0.0
            }
        };
        (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1.0 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1))
    };
    let mut worst = 0f64;
    for c in 0..2 {
        for (j, &y) in ys.iter().enumerate() {
            for (i, &x) in xs.iter().enumerate() {
                worst = worst.max((got[c][j][i] as f64 - bilinear(c, y, x)).abs());
            }
        }
    }
    assert!(worst <= 1e-3, "worst {worst}");
    // and it is not the sliced box
    let sliced = img
        .i((0, .., 3..11, 5..17))
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    assert_ne!(got, sliced);
}

#[test]
fn sample_positions_without_align_corners_are_the_box_pixels() {
    let xs = sample_positions(5.0, 17.0, 24, 12, false);
    for (j, x) in xs.iter().enumerate() {
        assert!((x - (5 + j) as f64).abs() < 1e-9);
    }
}
