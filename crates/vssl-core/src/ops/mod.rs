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

pub mod color;
pub mod conv;
pub mod grid;
pub mod local;
pub mod norm;
pub mod optim;
pub mod pad;
pub mod pool;
pub mod resize;
pub mod softmax;
pub mod topk;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Tensor};

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
