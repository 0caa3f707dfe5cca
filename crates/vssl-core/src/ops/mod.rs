//! Tensor ops that candle 0.11 lacks, or has without a backward pass, or makes slow.
//!
//! Every op works on `f32` tensors, returns [`crate::Result`], and checks its arguments: a wrong
//! rank, mismatched shapes, an out-of-range `k` or radius give an [`crate::Error::Op`] naming the
//! op and the shapes, never a panic. Each op has two paths:
//!
//! - a fast CPU kernel (a candle `CustomOp` with an explicit backward), used when every input is
//!   an `f32` tensor on the CPU;
//! - a *portable* path composed of differentiable candle ops, used on every other device (CUDA,
//!   Metal), and exposed as `*_portable` so tests can prove both paths compute the same thing.

pub mod attention;
pub mod color;
pub mod conv;
pub mod frozen;
mod gemm;
pub mod grid;
pub mod local;
pub mod norm;
pub mod optim;
pub mod pad;
pub mod pool;
pub mod propagation;
pub mod resize;
pub mod softmax;
pub mod topk;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Tensor};

/// A zero-filled `f32` buffer whose pages have been *written*, for kernels that accumulate into
/// their output (`+=`).
///
/// A fresh `vec![0.0; n]` of more than a few pages comes from `calloc` as untouched memory: a
/// kernel that reads such a page before writing it maps the shared zero page, and the first
/// write then takes a copy-on-write fault whose TLB shootdown interrupts every thread of the
/// process. On a virtual machine that costs more than the arithmetic of a convolution's input
/// gradient (measured: the 1×1/2 shortcut's input gradient of ResNet-18 at batch 8 took 75 ms,
/// its arithmetic about 1 ms). Writing the zeros first, in parallel, maps the pages directly.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()
        .par_chunks_mut(1 << 15)
        .for_each(|chunk| {
            for x in chunk {
                x.write(0.0);
            }
        });
    // SAFETY: every one of the `len` elements of the spare capacity was initialised above.
    unsafe { v.set_len(len) };
    v
}

/// True when `t` can go through the fast CPU kernels: an `f32` tensor on the CPU.
pub(crate) fn fast_cpu(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Fails unless `t` holds `f32` values.
pub(crate) fn ensure_f32(op: &'static str, name: &str, t: &Tensor) -> crate::Result<()> {
    crate::ensure!(
        t.dtype() == DType::F32,
        op,
        "{name} must be f32, got {:?} with shape {:?}",
        t.dtype(),
        t.dims()
    );
    Ok(())
}

/// The `f32` values of a contiguous CPU storage, starting at the layout's offset.
///
/// The fast kernels make their inputs contiguous before they run, so a strided layout here is a
/// bug in the caller: it is reported, not silently misread.
pub(crate) fn cpu_f32<'a>(
    op: &'static str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_slice(),
        other => {
            return Err(crate::Error::op(
                op,
                format!("expected f32 storage, got {:?}", other.dtype()),
            )
            .into());
        }
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(crate::Error::op(
            op,
            format!(
                "expected a contiguous layout, got shape {:?} strides {:?}",
                layout.dims(),
                layout.stride()
            ),
        )
        .into()),
    }
}
