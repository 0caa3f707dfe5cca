//! Every loss term on inputs whose value is known in closed form, plus gradient flow and errors.
//! (The terms are also compared, composed into the ContrastCorr step, against a float64 PyTorch
//! transcription of the official code in `crates/vssl-train/tests/step.rs`.)

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::Result;
use vssl_loss::Terms;
use vssl_loss::affinity::{affinity, copy, copy_weights, masked_self_affinity, transpose};
use vssl_loss::colour::{LabWeights, per_sample_l1, reconstruction_l1, thresholded_mean};
use vssl_loss::concentration::{Concentration, concentration_switch, identity_grid};
use vssl_loss::inter::inter_video;

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

fn close(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "got {got}, want {want}"
    );
}

/// A [B, 3, H, W] image with constant channels.
fn constant(b: usize, lab: [f32; 3], h: usize, w: usize) -> Result<Tensor> {
    let c = Tensor::new(&lab, &Device::Cpu)?.reshape((1, 3, 1, 1))?;
    Ok(c.broadcast_as((b, 3, h, w))?.contiguous()?)
}

#[test]
fn weighted_l1_is_one_ten_ten_per_sample() -> Result<()> {
    let pred = Tensor::cat(
        &[
            constant(1, [0.0; 3], 4, 4)?,
            constant(1, [0.5, 0.0, 0.0], 4, 4)?,
        ],
        0,
    )?;
    let gt = Tensor::cat(
        &[
            constant(1, [0.1, 0.2, -0.05], 4, 4)?,
            constant(1, [0.0; 3], 4, 4)?,
        ],
        0,
    )?;
    let per = per_sample_l1(&pred, &gt, LabWeights::default())?.to_vec1::<f32>()?;
    close(per[0] as f64, 0.1 + 2.0 + 0.5, 1e-6);
    close(per[1] as f64, 0.5, 1e-6);
    Ok(())
}

#[test]
fn threshold_rejects_whole_samples_and_keeps_them_in_the_mean() -> Result<()> {
    let v = Var::new(&[1.0f32, 3.0], &Device::Cpu)?;
    let m = thresholded_mean(v.as_tensor(), Some(2.0))?;
    close(scalar(&m)?, 0.5, 1e-7);
    let g = m
        .backward()?
        .get(v.as_tensor())
        .expect("grad")
        .to_vec1::<f32>()?;
    assert_eq!(g, vec![0.5, 0.0], "a rejected sample passes no gradient");
    close(scalar(&thresholded_mean(v.as_tensor(), None)?)?, 2.0, 1e-7);
    // Equal to the threshold is kept (`loss[loss > thr] = 0`).
    close(
        scalar(&thresholded_mean(v.as_tensor(), Some(3.0))?)?,
        2.0,
        1e-7,
    );
    // NaN is never rejected: it must reach the total and stop training.
    let nan = Tensor::new(&[f32::NAN, 1.0], &Device::Cpu)?;
    assert!(scalar(&thresholded_mean(&nan, Some(2.0))?)?.is_nan());
    Ok(())
}

#[test]
fn the_switch_is_inside_the_thresholded_sum() -> Result<()> {
    let w = LabWeights::default();
    let p2 = constant(1, [0.0; 3], 2, 2)?;
    let g2 = constant(1, [1.0, 0.0, 0.0], 2, 2)?; // ℓ2 = 1
    let p1 = constant(1, [0.0; 3], 2, 2)?;
    let g1 = constant(1, [0.0, 0.5, 0.0], 2, 2)?; // ℓ1 = 5
    let both = reconstruction_l1(&p2, &g2, Some((&p1, &g1, 0.1)), w, None)?;
    close(scalar(&both)?, 1.5, 1e-6);
    // ℓ2 alone passes a threshold of 1.2, the sum 1.5 does not: the sample is rejected.
    let thr = reconstruction_l1(&p2, &g2, Some((&p1, &g1, 0.1)), w, Some(1.2))?;
    close(scalar(&thr)?, 0.0, 0.0);
    close(
        scalar(&reconstruction_l1(&p2, &g2, None, w, Some(1.2))?)?,
        1.0,
        1e-6,
    );
    let e = reconstruction_l1(&p2, &constant(1, [0.0; 3], 4, 4)?, None, w, None)
        .expect_err("shape mismatch")
        .to_string();
    assert!(e.contains("colour_l1") && e.contains("[1, 3, 4, 4]"), "{e}");
    Ok(())
}

#[test]
fn affinity_copy_and_transpose() -> Result<()> {
    // Two positions with orthogonal features: A = diag(4, 9).
    let f = Tensor::new(&[2.0f32, 0.0, 0.0, 3.0], &Device::Cpu)?.reshape((1, 2, 1, 2))?;
    let a = affinity(&f, &f)?;
    assert_eq!(
        a.to_vec3::<f32>()?,
        vec![vec![vec![4.0, 0.0], vec![0.0, 9.0]]]
    );
    // Columns of the copy weights sum to one (softmax over reference positions).
    let w = copy_weights(&a, 1.0)?;
    let cols = w.sum(1)?.to_vec2::<f32>()?;
    for c in &cols[0] {
        close(*c as f64, 1.0, 1e-6);
    }
    let x = Tensor::new(&[10.0f32, 20.0], &Device::Cpu)?.reshape((1, 1, 1, 2))?;
    let y = copy(&w, &x, (1, 2))?.flatten_all()?.to_vec1::<f32>()?;
    let e4 = (4.0f64).exp();
    let e9 = (9.0f64).exp();
    close(y[0] as f64, (10.0 * e4 + 20.0) / (e4 + 1.0), 1e-6);
    close(y[1] as f64, (10.0 + 20.0 * e9) / (1.0 + e9), 1e-6);
    assert_eq!(transpose(&a)?.dims(), [1, 2, 2]);
    // No pixel copies itself in the self-reconstruction.
    let s = softmax_dim1(&masked_self_affinity(&f)?)?;
    let s = s.to_vec3::<f32>()?;
    assert_eq!((s[0][0][0], s[0][1][1]), (0.0, 0.0));
    let e = copy(&w, &x, (2, 2)).expect_err("wrong size").to_string();
    assert!(e.contains("affinity"), "{e}");
    Ok(())
}

fn softmax_dim1(a: &Tensor) -> Result<Tensor> {
    copy_weights(a, 1.0)
}

/// An affinity that copies every target position from reference position `src(t)`, sharply.
fn hard_affinity(b: usize, n: usize, src: impl Fn(usize) -> usize) -> Result<Tensor> {
    let mut v = vec![0f32; b * n * n];
    for bi in 0..b {
        for t in 0..n {
            v[bi * n * n + src(t) * n + t] = 100.0;
        }
    }
    Ok(Tensor::from_vec(v, (b, n, n), &Device::Cpu)?)
}

#[test]
fn concentration_of_the_identity_is_the_grid_spread() -> Result<()> {
    let (h, w) = (16, 16);
    let cfg = Concentration::default();
    let id = hard_affinity(2, h * w, |t| t)?;
    // Every window holds 8 evenly spaced x and 8 evenly spaced y values, spacing d = 2/15:
    // variance d²(8² − 1)/12 per coordinate; the loss sums both maps and both coordinates over
    // one map's element count: 2 · (var_x + var_y) / 2 = 2 var.
    let d = 2.0 / 15.0;
    let var = d * d * 63.0 / 12.0;
    close(
        scalar(&concentration_switch(&id, (h, w), &cfg)?)?,
        2.0 * var,
        1e-5,
    );
    // Everything copied from one position (and that position copied everywhere is not a
    // permutation, but the first direction is constant): only the transpose contributes.
    let one = hard_affinity(1, h * w, |_| 37)?;
    let c = scalar(&concentration_switch(&one, (h, w), &cfg)?)?;
    assert!(c < 2.0 * var, "{c}");
    // align_corners = false spaces the grid by 2/16.
    let cfg_f = Concentration {
        align_corners: false,
        ..cfg
    };
    let d = 2.0 / 16.0;
    close(
        scalar(&concentration_switch(&id, (h, w), &cfg_f)?)?,
        2.0 * d * d * 63.0 / 12.0,
        1e-5,
    );
    // Overlapping windows (stride 4) go through the general path: same per-window spread.
    let cfg_s = Concentration { stride: 4, ..cfg };
    close(
        scalar(&concentration_switch(&id, (h, w), &cfg_s)?)?,
        2.0 * var,
        1e-5,
    );
    let g = identity_grid(2, 3, true, &Device::Cpu)?.to_vec2::<f32>()?;
    assert_eq!(
        g,
        vec![
            vec![-1.0, 0.0, 1.0, -1.0, 0.0, 1.0],
            vec![-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
        ]
    );
    let e = concentration_switch(&id, (8, 8), &cfg)
        .expect_err("size")
        .to_string();
    assert!(
        e.contains("concentration") && e.contains("[2, 256, 256]"),
        "{e}"
    );
    Ok(())
}

#[test]
fn concentration_passes_gradients_to_the_affinity() -> Result<()> {
    let v: Vec<f32> = (0..2 * 64 * 64)
        .map(|i| ((i * 7919) % 101) as f32 / 50.0)
        .collect();
    let a = Var::from_tensor(&Tensor::from_vec(v, (2, 64, 64), &Device::Cpu)?)?;
    let cfg = Concentration {
        window: 4,
        stride: 4,
        ..Concentration::default()
    };
    let g = concentration_switch(a.as_tensor(), (8, 8), &cfg)?.backward()?;
    let g = g.get(a.as_tensor()).expect("grad").abs()?.sum_all()?;
    assert!(scalar(&g)? > 0.0);
    Ok(())
}

#[test]
fn inter_video_sparsity_measures_cross_video_mass() -> Result<()> {
    let dev = Device::Cpu;
    // Two videos with orthogonal, strong features: all mass stays on the own video.
    let mk = |x: [f32; 2]| -> Result<Tensor> {
        Ok(Tensor::new(&x, &dev)?
            .reshape((1, 2, 1, 1))?
            .broadcast_as((1, 2, 2, 2))?
            .contiguous()?)
    };
    let f = Tensor::cat(&[mk([30.0, 0.0])?, mk([0.0, 30.0])?], 0)?; // [2, 2, 2, 2]
    let colour = Tensor::arange(0f32, 2.0 * 3.0 * 4.0, &dev)?.reshape((2, 3, 2, 2))?;
    let r = inter_video(&f, &f, &colour, 1.0)?;
    close(scalar(&r.sparsity)?, 0.0, 1e-6);
    // Within a video all positions tie: the reconstruction is the video's mean colour.
    let mean = colour.mean_keepdim(3)?.mean_keepdim(2)?;
    let diff = (r.reconstruction.broadcast_sub(&mean))?.abs()?.max_all()?;
    assert!(scalar(&diff)? < 1e-5);
    // Identical features in both videos: half the mass on the other video.
    let same = Tensor::cat(&[mk([1.0, 1.0])?, mk([1.0, 1.0])?], 0)?;
    close(
        scalar(&inter_video(&same, &same, &colour, 1.0)?.sparsity)?,
        0.5,
        1e-6,
    );
    // Gradients reach both feature maps.
    let q = Var::from_tensor(&(same.clone() + 0.1)?)?;
    let k = Var::from_tensor(&Tensor::cat(&[mk([1.0, 0.5])?, mk([0.2, 1.0])?], 0)?)?;
    let out = inter_video(q.as_tensor(), k.as_tensor(), &colour, 1.0)?;
    let grads = (out.sparsity + out.reconstruction.sum_all()?)?.backward()?;
    assert!(grads.get(q.as_tensor()).is_some() && grads.get(k.as_tensor()).is_some());
    let e = inter_video(&f, &f, &colour.narrow(0, 0, 1)?, 1.0)
        .expect_err("batch")
        .to_string();
    assert!(e.contains("inter_video"), "{e}");
    Ok(())
}

#[test]
fn terms_sum_with_their_weights() -> Result<()> {
    let dev = Device::Cpu;
    let mut t = Terms::new();
    t.push("a", 1.0, Tensor::new(2.0f32, &dev)?)?;
    t.push("b", 0.3, Tensor::new(10.0f32, &dev)?)?;
    t.push("c", 0.0, Tensor::new(100.0f32, &dev)?)?;
    close(scalar(&t.total()?)?, 5.0, 1e-6);
    assert_eq!(t.values()?, vec![("a", 2.0), ("b", 10.0), ("c", 100.0)]);
    assert!(t.push("a", 1.0, Tensor::new(1.0f32, &dev)?).is_err());
    let e = t
        .push("d", 1.0, Tensor::zeros(2, DType::F32, &dev)?)
        .expect_err("vector")
        .to_string();
    assert!(e.contains("scalar"), "{e}");
    assert!(Terms::new().total().is_err());
    Ok(())
}
