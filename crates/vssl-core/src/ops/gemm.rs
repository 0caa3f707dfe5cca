//! Matrix products on the `gemm` crate over raw buffers, for the CPU kernels.

use crate::{Error, Result};

/// A row-major matrix view: `rows × cols` starting at `data[0]`, with its strides.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

/// A destination matrix inside a buffer that several threads write, each into its own disjoint
/// set of elements.
#[derive(Clone, Copy)]
pub(crate) struct Dst {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: `Dst` is only handed to items that write disjoint elements (documented at each use),
// and the buffer outlives the parallel loop that uses it.
unsafe impl Send for Dst {}
// SAFETY: as above.
unsafe impl Sync for Dst {}

impl Dst {
    pub(crate) fn new(buf: &mut [f32]) -> Self {
        Self {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }
}

/// `dst[offset + r·dst_rs + c] (+)= (a · b)[r, c]` for an `m × n` product with inner size `k`.
///
/// # Safety
/// No other thread may read or write the `m × n` destination elements during the call.
/// Every index the product touches is checked against the buffers first, so the raw pointers
/// handed to `gemm` stay in bounds.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    dst: Dst,
    offset: usize,
    dst_rs: usize,
    a: Mat,
    b: Mat,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    parallel: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let last = |rs: usize, cs: usize, r: usize, c: usize| (r - 1) * rs + (c - 1) * cs;
    let ok = offset + last(dst_rs, 1, m, n) < dst.len
        && (k == 0
            || (last(a.rs, a.cs, m, k) < a.data.len() && last(b.rs, b.cs, k, n) < b.data.len()));
    if !ok {
        return Err(Error::op("gemm", "internal: matrix out of bounds"));
    }
    // SAFETY: `offset` is inside the buffer (checked above).
    let d = unsafe { dst.ptr.add(offset) };
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                // SAFETY: row r's n elements are inside the buffer (checked above) and ours.
                unsafe { std::slice::from_raw_parts_mut(d.add(r * dst_rs), n) }.fill(0.0);
            }
        }
        return Ok(());
    }
    let par = if parallel && m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the bounds of all three matrices were checked above; the destination elements are
    // this call's alone (the caller's contract) and do not alias `a` or `b`, which are shared
    // borrows of other buffers.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            d,
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// [`matmul`] into an exclusively borrowed buffer (`dst[r·dst_rs + c]`), which makes it safe.
pub(crate) fn matmul_into(
    dst: &mut [f32],
    dst_rs: usize,
    a: Mat,
    b: Mat,
    dims: (usize, usize, usize),
    accumulate: bool,
    parallel: bool,
) -> Result<()> {
    // SAFETY: `dst` is borrowed exclusively for the call.
    unsafe { matmul(Dst::new(dst), 0, dst_rs, a, b, dims, accumulate, parallel) }
}
