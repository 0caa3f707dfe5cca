//! The portable paths on a CUDA device, checked against the CPU kernels (which the golden tests
//! prove against PyTorch): forward values and every input gradient, for every op.
//!
//! Built only with `--features cuda`; it needs a GPU at run time (the whole file is absent from
//! the default CPU build, so no test pretends to pass without one).
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::Result;
use vssl_core::testing::{Tolerance, assert_close};

/// GPU reductions sum in another order than the CPU kernels: allow a few f32 ulps more.
const TOL: Tolerance = Tolerance::SINGLE_OP.with_rtol(1e-4).with_atol_of_max(1e-5);

fn gpu() -> Result<Device> {
    Ok(Device::new_cuda(0)?)
}

/// Deterministic values in [lo, hi) (a small LCG: no RNG dependency in vssl-core's tests).
fn values(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// Runs `f` on the CPU (the fast kernels) and on the GPU (the portable paths) with the same
/// inputs, and compares the outputs and the gradient of `sum(out · w)` to every input.
fn same_on_gpu(
    name: &str,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<()> {
    let dev = gpu()?;
    let run = |device: &Device| -> Result<(Tensor, Vec<Tensor>)> {
        let vars = inputs
            .iter()
            .map(|t| Var::from_tensor(&t.to_device(device)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let out = f(&ts)?;
        let w = values(out.dims(), 99, -1.0, 1.0)?.to_device(device)?;
        let grads = out.broadcast_mul(&w)?.sum_all()?.backward()?;
        let mut gs = Vec::new();
        for (i, v) in vars.iter().enumerate() {
            let g = grads.get(v.as_tensor()).ok_or_else(|| {
                vssl_core::Error::op(
                    "cuda test",
                    format!("{name}: no gradient for input {i} on {device:?}"),
                )
            })?;
            gs.push(g.to_device(&Device::Cpu)?);
        }
        Ok((out.to_device(&Device::Cpu)?, gs))
    };
    let (out_cpu, g_cpu) = run(&Device::Cpu)?;
    let (out_gpu, g_gpu) = run(&dev)?;
    assert!(out_gpu.device().is_cpu());
    assert_close(&format!("{name} out"), &out_gpu, &out_cpu, TOL)?;
    for (i, (a, b)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        assert_close(&format!("{name} grad {i}"), a, b, TOL)?;
    }
    Ok(())
}

#[test]
fn grid_sample_on_gpu() -> Result<()> {
    use vssl_core::ops::grid::{affine_grid, grid_sample};
    let x = values(&[2, 3, 9, 11], 1, -1.0, 1.0)?;
    let g = values(&[2, 5, 7, 2], 2, -1.2, 1.2)?;
    for ac in [false, true] {
        same_on_gpu("grid_sample", &[x.clone(), g.clone()], |t| {
            grid_sample(&t[0], &t[1], ac)
        })?;
    }
    let theta = values(&[2, 2, 3], 3, -0.8, 0.8)?;
    same_on_gpu("affine_grid+grid_sample", &[x, theta], |t| {
        let grid = affine_grid(&t[1], (2, 3, 6, 5), true)?;
        grid_sample(&t[0], &grid, true)
    })
}

#[test]
fn max_pool_pad_softmax_on_gpu() -> Result<()> {
    use vssl_core::ops::{pad::reflection_pad2d, pool::max_pool2d, softmax::softmax};
    let x = values(&[2, 3, 13, 10], 4, -2.0, 2.0)?;
    same_on_gpu("max_pool2d", &[x.clone()], |t| {
        max_pool2d(&t[0], (3, 3), (2, 2), (1, 1))
    })?;
    same_on_gpu("reflection_pad2d", &[x.clone()], |t| {
        reflection_pad2d(&t[0], (2, 1, 3, 0))
    })?;
    for dim in 0..4 {
        same_on_gpu("softmax", &[x.clone()], |t| softmax(&t[0], dim))?;
    }
    Ok(())
}

#[test]
fn gpu_outputs_stay_on_the_gpu() -> Result<()> {
    use vssl_core::ops::softmax::softmax;
    let dev = gpu()?;
    let x = values(&[4, 5], 5, -1.0, 1.0)?.to_device(&dev)?;
    let y = softmax(&x, 1)?;
    assert!(y.device().is_cuda() && y.dtype() == DType::F32);
    Ok(())
}

#[test]
fn resize_on_gpu() -> Result<()> {
    use vssl_core::ops::resize::{resize_bilinear, resize_nearest, resize_nearest_pil};
    let x = values(&[2, 3, 9, 7], 6, -1.0, 1.0)?;
    for ac in [false, true] {
        same_on_gpu("resize_bilinear up", &[x.clone()], |t| {
            resize_bilinear(&t[0], (20, 13), ac)
        })?;
        same_on_gpu("resize_bilinear down", &[x.clone()], |t| {
            resize_bilinear(&t[0], (4, 5), ac)
        })?;
    }
    same_on_gpu("resize_nearest", &[x.clone()], |t| {
        resize_nearest(&t[0], (13, 5))
    })?;
    same_on_gpu("resize_nearest_pil", &[x], |t| {
        resize_nearest_pil(&t[0], (13, 5))
    })
}

#[test]
fn topk_and_local_window_on_gpu() -> Result<()> {
    use vssl_core::ops::local::{LocalWindow, local_affinity, local_aggregate};
    use vssl_core::ops::softmax::softmax;
    use vssl_core::ops::topk::topk;
    let x = values(&[3, 40, 17], 7, -1.0, 1.0)?;
    for dim in 0..3 {
        let k = x.dim(dim)?.min(5);
        same_on_gpu("topk values", &[x.clone()], |t| Ok(topk(&t[0], k, dim)?.0))?;
        let (_, i_cpu) = topk(&x, k, dim)?;
        let (_, i_gpu) = topk(&x.to_device(&gpu()?)?, k, dim)?;
        let (i_cpu, i_gpu) = (
            i_cpu.to_dtype(DType::F32)?,
            i_gpu.to_dtype(DType::F32)?.to_device(&Device::Cpu)?,
        );
        assert_close("topk indices", &i_gpu, &i_cpu, Tolerance::SINGLE_OP)?;
    }
    let a = values(&[2, 5, 7, 9], 8, -1.0, 1.0)?;
    let b = values(&[2, 5, 7, 9], 9, -1.0, 1.0)?;
    let v = values(&[2, 4, 7, 9], 10, -1.0, 1.0)?;
    for window in [LocalWindow::square(2), LocalWindow::euclidean(2)] {
        same_on_gpu(
            "local affinity → softmax → aggregate",
            &[a.clone(), b.clone(), v.clone()],
            |t| {
                let aff = local_affinity(&t[0], &t[1], window)?;
                let w = softmax(&aff, 1)?;
                local_aggregate(&w, &t[2], 2)
            },
        )?;
    }
    Ok(())
}

#[test]
fn lab_conversion_on_gpu() -> Result<()> {
    use vssl_core::ops::color::{lab_to_rgb, rgb_to_lab, rgb_u8_to_lab_tensor};
    let rgb = values(&[2, 3, 5, 7], 11, 0.0, 1.0)?;
    same_on_gpu("rgb_to_lab", &[rgb], |t| rgb_to_lab(&t[0]))?;
    let lab = Tensor::cat(
        &[
            values(&[2, 1, 5, 7], 12, 5.0, 95.0)?,
            values(&[2, 2, 5, 7], 13, -40.0, 40.0)?,
        ],
        1,
    )?;
    same_on_gpu("lab_to_rgb", &[lab], |t| lab_to_rgb(&t[0]))?;
    // The 8-bit path computes on the host and returns the result on the input's device.
    let u8s = values(&[2, 4, 6, 3], 14, 0.0, 255.0)?.to_dtype(DType::U8)?;
    let on_cpu = rgb_u8_to_lab_tensor(&u8s)?;
    let on_gpu = rgb_u8_to_lab_tensor(&u8s.to_device(&gpu()?)?)?;
    assert!(on_gpu.device().is_cuda());
    assert_close(
        "rgb_u8_to_lab_tensor",
        &on_gpu.to_device(&Device::Cpu)?,
        &on_cpu,
        Tolerance::SINGLE_OP,
    )?;
    Ok(())
}
