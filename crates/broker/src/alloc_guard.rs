//! An allocator that makes forged array counts harmless.
//!
//! kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(count)`
//! with the count read from the wire, before it has checked that the frame
//! holds that many elements. A 40-byte request claiming 2^31 topics would ask
//! for hundreds of GiB, which the kernel refuses and Rust turns into an abort
//! of the whole broker.
//!
//! Frames are bounded (`socket.request.max.bytes`), so the number of elements
//! actually decoded is bounded too; only the *capacity* is untrusted. This
//! allocator serves requests of [`HUGE`] bytes or more with an anonymous
//! `MAP_NORESERVE` mapping: address space is reserved but no memory is
//! committed until touched, so the doomed decode fails on the missing bytes
//! and the mapping is returned without ever costing memory. Ordinary
//! allocations go to the system allocator unchanged. The broker itself never
//! makes legitimate allocations this large.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations at or above this size are reserved lazily.
pub const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct GuardedAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

unsafe fn map_lazily(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is reported as MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p as *mut u8
    }
}

unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map_lazily(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            unsafe { map_lazily(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe { libc::munmap(ptr as *mut libc::c_void, layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            unsafe {
                ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservations_cost_nothing_until_touched() {
        let alloc = GuardedAllocator;
        // 64 GiB: more than this machine has, fine as a reservation.
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        let p = unsafe { alloc.alloc(layout) };
        assert!(!p.is_null());
        unsafe {
            *p = 7;
            assert_eq!(*p, 7);
            alloc.dealloc(p, layout);
        }
    }

    #[test]
    fn realloc_across_the_threshold_keeps_contents() {
        let alloc = GuardedAllocator;
        let small = Layout::from_size_align(16, 8).unwrap();
        unsafe {
            let p = alloc.alloc(small);
            ptr::write_bytes(p, 0xab, 16);
            let q = alloc.realloc(p, small, HUGE);
            assert!(!q.is_null());
            assert_eq!(*q.add(15), 0xab);
            let huge = Layout::from_size_align(HUGE, 8).unwrap();
            let r = alloc.realloc(q, huge, 32);
            assert_eq!(*r.add(15), 0xab);
            alloc.dealloc(r, Layout::from_size_align(32, 8).unwrap());
        }
    }
}
