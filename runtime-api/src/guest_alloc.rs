//! The runtime's memory allocator: power-of-two size classes, one free list each, carved from
//! the heap by a bump pointer.
//!
//! Every runtime call starts from the state of a fresh instance, so a call's heap starts empty
//! and is thrown away (or the instance restored) after it: what matters is the cost of each allocation and how few pages a call
//! touches, not fragmentation over a long life. A general-purpose allocator (dlmalloc) spent a
//! third of a transfer's wasm time in `malloc`/`free`; here an allocation is a free-list pop or a
//! bump, a free is a push, and a `realloc` within the same class, or of the block carved last (a
//! growing buffer being encoded), stays in place.
//!
//! Deterministic: the addresses handed out depend only on the sequence of requests.
//!
//! [`Heap`] is the logic over plain addresses (tested natively); `GuestAllocator` (wasm32 only) is the
//! `#[global_allocator]` a wasm runtime installs, over its linear memory.

/// Smallest block: 16 bytes (`log2` = 4).
const MIN_CLASS: u32 = 4;
/// Number of classes: blocks of 16 B up to 2 GiB.
const CLASSES: usize = 28;
/// Every block is aligned to 16 bytes, which covers what Rust asks of ordinary types. A request
/// for more is carved fresh at its alignment (never served from a free list).
const BASE_ALIGN: usize = 16;
/// Largest alignment served.
const MAX_ALIGN: usize = 4096;

/// Where a [`Heap`] gets more memory from.
pub trait Grow {
    /// Extends the heap by at least `bytes` beyond `end` (the current end) and returns the new
    /// end, or `None` when memory is exhausted.
    fn grow(&mut self, end: usize, bytes: usize) -> Option<usize>;
}

/// The allocator's state over the address range `[next, end)` it has not handed out yet.
#[derive(Debug)]
pub struct Heap<G> {
    /// Head of each class's free list (0: empty). A free block's first word holds the next.
    free: [usize; CLASSES],
    next: usize,
    end: usize,
    grow: G,
}

/// The class (`log2` of the block size) serving `size` bytes at `align`, if any.
fn class_of(size: usize, align: usize) -> Option<u32> {
    if align > MAX_ALIGN {
        return None;
    }
    let block = size.max(1 << MIN_CLASS).checked_next_power_of_two()?;
    let class = block.trailing_zeros();
    ((class - MIN_CLASS) < CLASSES as u32).then_some(class)
}

impl<G: Grow> Heap<G> {
    /// A heap handing out `[start, end)` first, then what `grow` adds. `start` must be aligned
    /// to 16 and non-zero (0 marks an empty free list).
    pub const fn new(start: usize, end: usize, grow: G) -> Self {
        Self {
            free: [0; CLASSES],
            next: start,
            end,
            grow,
        }
    }

    /// Allocates `size` bytes aligned to `align` (a power of two); `None` when memory is
    /// exhausted or the request cannot be served (alignment above a page).
    ///
    /// # Safety
    ///
    /// The heap's range (and what `grow` returns) must be memory this heap owns exclusively,
    /// readable and writable.
    pub unsafe fn alloc(&mut self, size: usize, align: usize) -> Option<usize> {
        let class = class_of(size, align)?;
        let slot = (class - MIN_CLASS) as usize;
        let head = self.free[slot];
        if head != 0 && align <= BASE_ALIGN {
            // SAFETY: `head` is a block of this class that was freed into the list; its first
            // word was written by `dealloc`.
            self.free[slot] = unsafe { (head as *const usize).read() };
            return Some(head);
        }
        let start = self.next.checked_next_multiple_of(align.max(BASE_ALIGN))?;
        self.carve_to(start.checked_add(1 << class)?)?;
        Some(start)
    }

    /// Moves the bump pointer to `stop`, growing the heap if needed.
    fn carve_to(&mut self, stop: usize) -> Option<()> {
        if stop > self.end {
            self.end = self.grow.grow(self.end, stop - self.end)?;
            if stop > self.end {
                return None;
            }
        }
        self.next = stop;
        Some(())
    }

    /// Returns a block to its class's free list.
    ///
    /// # Safety
    ///
    /// `ptr` must have come from [`Self::alloc`] (or [`Self::realloc`]) of this heap with the
    /// same `size` and `align`, and must not be used afterwards.
    pub unsafe fn dealloc(&mut self, ptr: usize, size: usize, align: usize) {
        let Some(class) = class_of(size, align) else {
            return;
        };
        let slot = (class - MIN_CLASS) as usize;
        // SAFETY: the block is at least 16 bytes, aligned, owned by the heap and no longer used.
        unsafe { (ptr as *mut usize).write(self.free[slot]) };
        self.free[slot] = ptr;
    }

    /// Resizes a block: the same block when the new size is in the same class or smaller, or
    /// when the block is the last one carved (it grows in place); else a new block with the
    /// contents copied and the old one freed.
    ///
    /// # Safety
    ///
    /// As [`Self::dealloc`] for `ptr`, `size` and `align`.
    pub unsafe fn realloc(
        &mut self,
        ptr: usize,
        size: usize,
        align: usize,
        new_size: usize,
    ) -> Option<usize> {
        let (old, new) = (class_of(size, align)?, class_of(new_size, align)?);
        if new <= old {
            // A shrunk block keeps its tail; it is freed into the smaller class later.
            return Some(ptr);
        }
        if ptr + (1 << old) == self.next {
            self.carve_to(ptr.checked_add(1 << new)?)?;
            return Some(ptr);
        }
        // SAFETY: forwarded from the caller; the two blocks are distinct live allocations.
        unsafe {
            let new = self.alloc(new_size, align)?;
            core::ptr::copy_nonoverlapping(ptr as *const u8, new as *mut u8, size.min(new_size));
            self.dealloc(ptr, size, align);
            Some(new)
        }
    }
}

#[cfg(target_arch = "wasm32")]
pub use wasm::GuestAllocator;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::{Grow, Heap};
    use core::alloc::{GlobalAlloc, Layout};
    use core::arch::wasm32;
    use core::cell::UnsafeCell;

    const PAGE: usize = 65536;

    unsafe extern "C" {
        /// First byte after the data and the stack, from the linker.
        static __heap_base: u8;
    }

    /// Grows linear memory with `memory.grow`.
    pub struct LinearMemory;

    impl Grow for LinearMemory {
        fn grow(&mut self, end: usize, bytes: usize) -> Option<usize> {
            // The heap ends where memory ends (see `GuestAllocator::heap`), so growing memory
            // extends the heap.
            let pages = bytes.div_ceil(PAGE);
            if wasm32::memory_grow(0, pages) == usize::MAX {
                return None;
            }
            Some(end + pages * PAGE)
        }
    }

    /// The `#[global_allocator]` of a wasm runtime: a [`Heap`] from `__heap_base` to the end of
    /// linear memory, growing it when full.
    ///
    /// ```ignore
    /// #[global_allocator]
    /// static ALLOCATOR: GuestAllocator = GuestAllocator::new();
    /// ```
    pub struct GuestAllocator(UnsafeCell<Option<Heap<LinearMemory>>>);

    // SAFETY: wasm runtimes are single-threaded (threads are compiled out of the host's engine).
    unsafe impl Sync for GuestAllocator {}

    impl GuestAllocator {
        /// An allocator that takes the heap on first use.
        pub const fn new() -> Self {
            Self(UnsafeCell::new(None))
        }

        #[allow(clippy::mut_from_ref)]
        fn heap(&self) -> &mut Heap<LinearMemory> {
            // SAFETY: single-threaded, and no allocator method re-enters another.
            let cell = unsafe { &mut *self.0.get() };
            cell.get_or_insert_with(|| {
                let start = (&raw const __heap_base as usize).next_multiple_of(16);
                let end = wasm32::memory_size(0) * PAGE;
                Heap::new(start, end.max(start), LinearMemory)
            })
        }
    }

    impl Default for GuestAllocator {
        fn default() -> Self {
            Self::new()
        }
    }

    // SAFETY: blocks are exclusive, aligned as asked (see `Heap`) and inside linear memory.
    unsafe impl GlobalAlloc for GuestAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the heap owns linear memory above `__heap_base`.
            unsafe { self.heap().alloc(layout.size(), layout.align()) }
                .map_or(core::ptr::null_mut(), |p| p as *mut u8)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded from the caller of `dealloc`.
            unsafe {
                self.heap()
                    .dealloc(ptr as usize, layout.size(), layout.align())
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded from the caller of `realloc`.
            unsafe {
                self.heap()
                    .realloc(ptr as usize, layout.size(), layout.align(), new_size)
            }
            .map_or(core::ptr::null_mut(), |p| p as *mut u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heap inside a boxed buffer that can grow up to its capacity.
    struct Buffer {
        cap_end: usize,
        grows: usize,
    }

    impl Grow for Buffer {
        fn grow(&mut self, end: usize, bytes: usize) -> Option<usize> {
            self.grows += 1;
            let new_end = end.checked_add(bytes.next_multiple_of(4096))?;
            (new_end <= self.cap_end).then_some(new_end)
        }
    }

    fn heap(buf: &mut [u8], initial: usize) -> Heap<Buffer> {
        let start = (buf.as_mut_ptr() as usize).next_multiple_of(MAX_ALIGN);
        let cap_end = buf.as_mut_ptr() as usize + buf.len();
        Heap::new(start, start + initial, Buffer { cap_end, grows: 0 })
    }

    #[test]
    fn classes_cover_size_and_alignment() {
        assert_eq!(class_of(1, 1), Some(4));
        assert_eq!(class_of(16, 8), Some(4));
        assert_eq!(class_of(17, 1), Some(5));
        assert_eq!(class_of(3, 64), Some(4));
        assert_eq!(class_of(4096, 4096), Some(12));
        assert_eq!(class_of(1, 8192), None);
        assert_eq!(class_of(usize::MAX, 1), None);
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_reused_after_free() {
        let mut buf = vec![0u8; 1 << 20];
        let mut h = heap(&mut buf, 64 * 1024);
        let mut live: Vec<(usize, usize, usize)> = Vec::new();
        // A deterministic mix of sizes and alignments, freeing every third block.
        let mut x = 7usize;
        for i in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let size = 1 + (x >> 33) % 700;
            let align = 1 << ((x >> 20) % 7);
            // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
            let p = unsafe { h.alloc(size, align) }.expect("room");
            assert_eq!(p % align, 0, "misaligned");
            // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
            unsafe { core::ptr::write_bytes(p as *mut u8, (i % 251) as u8, size) };
            live.push((p, size, align));
            if i % 3 == 0 {
                let (p, s, a) = live.swap_remove(live.len() / 2);
                // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
                unsafe { h.dealloc(p, s, a) };
            }
        }
        let mut spans: Vec<(usize, usize)> = live
            .iter()
            .map(|(p, s, a)| (*p, *p + (1usize << class_of(*s, *a).expect("a class"))))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "blocks overlap: {w:?}");
        }
        // A freed block is the next one handed out in its class.
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        let p = unsafe { h.alloc(100, 8) }.expect("room");
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        unsafe { h.dealloc(p, 100, 8) };
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        assert_eq!(unsafe { h.alloc(120, 4) }, Some(p));
    }

    #[test]
    fn realloc_grows_in_place_when_it_can_and_moves_the_contents_otherwise() {
        let mut buf = vec![0u8; 1 << 16];
        let mut h = heap(&mut buf, 4096);
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        let p = unsafe { h.alloc(20, 1) }.expect("room");
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        unsafe {
            core::ptr::copy_nonoverlapping(b"0123456789abcdefghij".as_ptr(), p as *mut u8, 20)
        };
        // Same class.
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        assert_eq!(unsafe { h.realloc(p, 20, 1, 32) }, Some(p));
        // The last block carved grows in place, past the heap's first end too.
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        assert_eq!(unsafe { h.realloc(p, 32, 1, 5000) }, Some(p));
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        let after = unsafe { h.alloc(16, 1) }.expect("room");
        assert_eq!(after, p + 8192);
        // Not the last one any more: it moves, with its contents.
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        let q = unsafe { h.realloc(p, 5000, 1, 9000) }.expect("room");
        assert_ne!(p, q);
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        let moved = unsafe { core::slice::from_raw_parts(q as *const u8, 20) };
        assert_eq!(moved, b"0123456789abcdefghij");
        // The old block went back to its list.
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        assert_eq!(unsafe { h.alloc(8000, 1) }, Some(p));
        // Shrinking keeps the block.
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        assert_eq!(unsafe { h.realloc(q, 9000, 1, 10) }, Some(q));
    }

    #[test]
    fn grows_when_full_and_fails_cleanly_when_memory_is_exhausted() {
        let mut buf = vec![0u8; 64 * 1024];
        let mut h = heap(&mut buf, 0);
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        assert!(unsafe { h.alloc(1000, 8) }.is_some());
        assert_eq!(h.grow.grows, 1);
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        assert_eq!(unsafe { h.alloc(1 << 20, 8) }, None);
        // Still usable after a failed request.
        // SAFETY: the heap owns `buf`, which outlives it; each block is used within its size.
        assert!(unsafe { h.alloc(100, 8) }.is_some());
    }
}
