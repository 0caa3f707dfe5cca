//! Process-wide memory settings for training and benchmark binaries.
//!
//! A training step allocates and frees the same large buffers (activations, gradients) again and
//! again. glibc's `malloc` serves blocks above its mmap threshold with fresh `mmap`s and returns
//! freed memory at the top of the heap to the system, so each step touches new pages: every page
//! costs a fault, and on the virtual machines we measure on, a write to a page first mapped by a
//! read costs a copy-on-write fault whose TLB shootdown interrupts every thread. Measured on
//! ResNet-18 (torchvision layout, batch 8, 256², 2 threads): the forward + backward step took
//! about 1.3× longer with glibc's defaults, and the input gradient of one 1×1/2 convolution 43 ms
//! instead of 10 ms.
//!
//! [`retain_freed_memory`] makes freed memory stay in the process for reuse (what PyTorch's
//! caching allocators do on the GPU). The peak resident memory is that of the largest step; it
//! is not given back to the system until the process exits.

/// Makes the C allocator keep freed memory for reuse: no `mmap` for large blocks (the heap
/// serves them) and no trimming of the heap's top. Call it first thing in `main`, before large
/// allocations. Returns whether the settings took effect: only with glibc (Linux `gnu` targets);
/// elsewhere it does nothing and returns `false`.
///
/// The environment variable `VSSL_RETAIN_MEMORY=0` turns it off (memory is then returned to the
/// system as glibc decides).
pub fn retain_freed_memory() -> bool {
    if std::env::var("VSSL_RETAIN_MEMORY").is_ok_and(|v| v.trim() == "0") {
        return false;
    }
    imp::retain()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::ffi::c_int;

    // mallopt(3) parameters (glibc's malloc.h).
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_MAX: c_int = -4;

    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    pub(super) fn retain() -> bool {
        // SAFETY: mallopt only changes allocator parameters; both values are documented as valid
        // (0 mmap'd blocks at most; a trim threshold of -1 disables trimming).
        unsafe { mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn retain() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_accepts_the_settings() {
        // Large blocks then come from the heap, and freeing them keeps them for reuse.
        let took = super::retain_freed_memory();
        assert_eq!(took, cfg!(all(target_os = "linux", target_env = "gnu")));
        let v = vec![1u8; 64 << 20];
        assert_eq!(v.iter().map(|&b| usize::from(b)).sum::<usize>(), 64 << 20);
    }
}
