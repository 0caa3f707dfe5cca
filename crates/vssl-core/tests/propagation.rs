//! Label propagation kernels: the fused CPU paths against the dense candle paths (whose pieces,
//! matmul, softmax and top-k, are golden-tested elsewhere), closed-form cases, and errors. The
//! whole protocols are checked against a PyTorch transcription of the reference test scripts in
//! `vssl-eval`'s tests.

use candle_core::{DType, Device, Tensor};
use vssl_core::Result;
use vssl_core::ops::local::LocalWindow;
use vssl_core::ops::propagation::{
    ContextFrame, GlobalOptions, propagate_global, propagate_global_portable, propagate_joint,
    propagate_joint_portable,
};
use vssl_core::testing::{Tolerance, assert_close};

fn feats(c: usize, n: usize, seed: f64) -> Result<Tensor> {
    // Smooth, non-negative, distinct features (post-ReLU like a ResNet's).
    let t = Tensor::arange(0f32, (c * n) as f32, &Device::Cpu)?
        .affine(0.37 + seed, seed)?
        .sin()?
        .relu()?
        .reshape((c, n))?;
    Ok(t)
}

fn labels(k: usize, n: usize) -> Result<Tensor> {
    let v: Vec<f32> = (0..k * n)
        .map(|i| if (i / n) == (i % n) % k { 1.0 } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(v, (k, n), &Device::Cpu)?)
}

#[test]
fn global_kernel_equals_the_dense_path() -> Result<()> {
    let (c, nr, nt, k) = (6, 37, 29, 3);
    let (ctx, tgt, lab) = (feats(c, nr, 0.1)?, feats(c, nt, 0.4)?, labels(k, nr)?);
    for (mutual, scale, topk) in [
        (true, 1.0, 5),
        (false, 1.0, 5),
        (true, 3.0, 1),
        (false, 0.5, 20),
    ] {
        let o = GlobalOptions {
            mutual_matching: mutual,
            scale,
            topk,
        };
        let a = propagate_global(&ctx, &lab, &tgt, o)?;
        let b = propagate_global_portable(&ctx, &lab, &tgt, o)?;
        assert_eq!(a.dims(), [k, nt]);
        assert_close(&format!("{o:?}"), &a, &b, Tolerance::COMPOSITE)?;
    }
    Ok(())
}

#[test]
fn global_top_k_keeps_ties_and_does_not_renormalise() -> Result<()> {
    // Two context nodes identical to the target, one orthogonal: the softmax gives the two equal
    // weights; top-1 keeps both (a tie); nothing is renormalised.
    let ctx = Tensor::new(&[[1.0f32, 1.0, 0.0], [0.0, 0.0, 1.0]], &Device::Cpu)?; // [2, 3]
    let tgt = Tensor::new(&[[1.0f32], [0.0]], &Device::Cpu)?; // [2, 1]
    let lab = Tensor::new(&[[1.0f32, 0.0, 0.0], [0.0, 1.0, 1.0]], &Device::Cpu)?; // [2, 3]
    let o = GlobalOptions {
        mutual_matching: false,
        scale: 1.0,
        topk: 1,
    };
    let got = propagate_global(&ctx, &lab, &tgt, o)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let e = std::f32::consts::E;
    let w = e / (2.0 * e + 1.0);
    assert!(
        (got[0] - w).abs() < 1e-6 && (got[1] - w).abs() < 1e-6,
        "{got:?}"
    );
    Ok(())
}

#[test]
fn joint_kernel_equals_the_dense_path() -> Result<()> {
    let (c, h, w, k) = (5, 6, 7, 3);
    let n = h * w;
    let frame = |seed: f64| -> Result<Tensor> { Ok(feats(c, n, seed)?.reshape((c, h, w))?) };
    let lab = |shift: usize| -> Result<Tensor> {
        let v: Vec<f32> = (0..k * n)
            .map(|i| (i / n + i % n + shift).is_multiple_of(k) as u8 as f32)
            .collect();
        Ok(Tensor::from_vec(v, (k, h, w), &Device::Cpu)?)
    };
    let context = vec![
        ContextFrame {
            features: frame(0.2)?,
            labels: lab(0)?,
            window: None,
        },
        ContextFrame {
            features: frame(0.5)?,
            labels: lab(1)?,
            window: Some(LocalWindow::euclidean(2)),
        },
        ContextFrame {
            features: frame(0.7)?,
            labels: lab(2)?,
            window: Some(LocalWindow::square(1)),
        },
    ];
    let tgt = frame(0.9)?;
    for (scale, topk) in [(20.0, 10), (1.0, 3), (5.0, 1)] {
        let a = propagate_joint(&tgt, &context, scale, topk)?;
        let b = propagate_joint_portable(&tgt, &context, scale, topk)?;
        assert_eq!(a.dims(), [k, h, w]);
        assert_close(
            &format!("scale {scale} top-{topk}"),
            &a,
            &b,
            Tolerance::COMPOSITE,
        )?;
        // Soft labels of one-hot labels: every node's sum is 1 (the softmax over the kept).
        let sums = a.sum(0)?.flatten_all()?.to_vec1::<f32>()?;
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }
    Ok(())
}

/// The register-blocked window kernel (Euclidean windows) on maps wider than its 8-node blocks,
/// with a row length that is not a multiple of 8 and a radius whose window spans blocks.
#[test]
fn joint_windows_on_larger_maps_equal_the_dense_path() -> Result<()> {
    let (c, h, w, k) = (19, 13, 21, 2);
    let n = h * w;
    let frame = |seed: f64| -> Result<Tensor> { Ok(feats(c, n, seed)?.reshape((c, h, w))?) };
    let lab = Tensor::from_vec(
        (0..k * n)
            .map(|i| ((i % n) % 3 == i / n) as u8 as f32)
            .collect::<Vec<_>>(),
        (k, h, w),
        &Device::Cpu,
    )?;
    let context: Vec<ContextFrame> = [0.3, 0.6]
        .iter()
        .map(|&s| -> Result<ContextFrame> {
            Ok(ContextFrame {
                features: frame(s)?,
                labels: lab.clone(),
                window: Some(LocalWindow::euclidean(5)),
            })
        })
        .collect::<Result<_>>()?;
    let tgt = frame(0.8)?;
    let a = propagate_joint(&tgt, &context, 20.0, 10)?;
    let b = propagate_joint_portable(&tgt, &context, 20.0, 10)?;
    assert_close("windows", &a, &b, Tolerance::COMPOSITE)?;
    Ok(())
}

#[test]
fn bad_shapes_are_clear_errors() -> Result<()> {
    let dev = Device::Cpu;
    let z = |d: &[usize]| Tensor::zeros(d, DType::F32, &dev);
    let o = GlobalOptions {
        mutual_matching: true,
        scale: 1.0,
        topk: 5,
    };
    let e = propagate_global(&z(&[4, 10])?, &z(&[2, 9])?, &z(&[4, 6])?, o)
        .expect_err("labels")
        .to_string();
    assert!(e.contains("propagate") && e.contains("[2, 9]"), "{e}");
    let e = propagate_global(&z(&[4, 3])?, &z(&[2, 3])?, &z(&[4, 6])?, o)
        .expect_err("top-5 of 3")
        .to_string();
    assert!(e.contains("top-k"), "{e}");
    let e = propagate_joint(&z(&[4, 3, 3])?, &[], 1.0, 1)
        .expect_err("no context")
        .to_string();
    assert!(e.contains("no context"), "{e}");
    let bad = ContextFrame {
        features: z(&[4, 3, 2])?,
        labels: z(&[2, 3, 3])?,
        window: None,
    };
    let e = propagate_joint(&z(&[4, 3, 3])?, &[bad], 1.0, 1)
        .expect_err("size")
        .to_string();
    assert!(e.contains("context frame 0"), "{e}");
    Ok(())
}

/// The fused joint path against the candle path where the selection is delicate: features on a
/// coarse grid (many affinities exactly equal, so the tie rule decides, and every dot product is
/// exact in any summation order) plus a variant nudged by 2⁻¹⁰ relative steps (near-ties, still
/// far apart compared with rounding: affinities a few ulps apart are ordered by each path's own
/// summation order, which differ; the fused path's is documented at its kernels); dense and
/// windowed frames mixed in any order; windows clipped by the borders of a map whose row length is
/// not a multiple of 8; top-k larger than some windows' candidate counts (a Euclidean window of
/// radius 1 offers one node, radius 2 at most 9).
#[test]
fn joint_kernel_equals_the_dense_path_on_ties_and_borders() -> Result<()> {
    let (c, h, w, k) = (24, 9, 19, 4);
    let n = h * w;
    let grid = |seed: usize, nudge: f32| -> Result<Tensor> {
        let v: Vec<f32> = (0..c * n)
            .map(|i| {
                let q = ((i * 7 + seed * 13 + (i / n) * (i % 5)) % 3) as f32 * 0.5;
                q * (1.0 + nudge * ((i * 31 + seed) % 7) as f32)
            })
            .collect();
        Ok(Tensor::from_vec(v, (c, h, w), &Device::Cpu)?)
    };
    let lab = |shift: usize| -> Result<Tensor> {
        let v: Vec<f32> = (0..k * n)
            .map(|i| ((i % n) * 5 + shift).is_multiple_of(k + i / n) as u8 as f32)
            .collect();
        Ok(Tensor::from_vec(v, (k, h, w), &Device::Cpu)?)
    };
    let windows = [
        Some(LocalWindow::euclidean(3)),
        None,
        Some(LocalWindow::euclidean(1)),
        Some(LocalWindow::square(1)),
        Some(LocalWindow::euclidean(2)),
        Some(LocalWindow::euclidean(12)),
        None,
    ];
    for nudge in [0.0, 1.0 / 1024.0] {
        let context: Vec<ContextFrame> = windows
            .iter()
            .enumerate()
            .map(|(i, &window)| -> Result<ContextFrame> {
                Ok(ContextFrame {
                    features: grid(i + 1, nudge)?,
                    labels: lab(i)?,
                    window,
                })
            })
            .collect::<Result<_>>()?;
        let tgt = grid(0, nudge)?;
        for (scale, topk) in [(1.0, 12), (3.0, 1), (0.5, 30)] {
            let a = propagate_joint(&tgt, &context, scale, topk)?;
            let b = propagate_joint_portable(&tgt, &context, scale, topk)?;
            assert_close(
                &format!("nudge {nudge} scale {scale} top-{topk}"),
                &a,
                &b,
                Tolerance::COMPOSITE,
            )?;
        }
    }
    Ok(())
}
