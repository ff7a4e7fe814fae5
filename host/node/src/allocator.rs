//! The allocator settings of the node's binaries (and of the benchmarks that measure them).
//! The binaries use mimalloc: glibc's per-thread arenas grow and shrink with mprotect on every
//! few transactions, and each mprotect takes the process-wide mmap lock the executor's memory
//! resets also need. A binary declares it with
//! `#[global_allocator] static A: vexidus_node::allocator::MiMalloc = MiMalloc;` and calls
//! [`keep_freed_memory_between_blocks`] first thing in `main`.

pub use mimalloc::MiMalloc;

/// Keeps freed memory mapped for ten seconds instead of mimalloc's 10 ms before it goes back to
/// the kernel. A block builds and frees tens of megabytes (multi-version memory, read sets,
/// overlays); returned 10 ms after, the next block faults the same pages in again and the
/// kernel zeroes each one: thousands of page faults per 10,000-transfer block on Block-STM,
/// almost none with ten seconds (`vexidus-bench execution` counts the restores). Ten
/// seconds is longer than any block interval, so a busy node keeps its working set and an idle
/// one still gives it back. An operator's own `MIMALLOC_PURGE_DELAY` is left alone (unless it
/// is exactly mimalloc's default, 10).
pub fn keep_freed_memory_between_blocks() {
    // SAFETY: plain option accessors of the allocator this binary links, with valid option indices.
    unsafe {
        if mimalloc_options::mi_option_get(mimalloc_options::PURGE_DELAY)
            == mimalloc_options::DEFAULT_PURGE_DELAY_MS
        {
            mimalloc_options::mi_option_set(mimalloc_options::PURGE_DELAY, 10_000);
        }
    }
}

/// The option accessors of mimalloc, which libmimalloc-sys exposes only with a feature and
/// without a constant for the purge delay.
mod mimalloc_options {
    use std::ffi::{c_int, c_long};

    /// `mi_option_purge_delay` in the `mi_option_t` enum of mimalloc 3 (libmimalloc-sys 0.1.49,
    /// pinned by Cargo.lock); the test below checks it against the environment variable.
    pub const PURGE_DELAY: c_int = 15;
    /// mimalloc's default purge delay.
    pub const DEFAULT_PURGE_DELAY_MS: c_long = 10;

    unsafe extern "C" {
        pub fn mi_option_get(option: c_int) -> c_long;
        pub fn mi_option_set(option: c_int, value: c_long);
    }

    #[cfg(test)]
    mod tests {
        /// The index really is the purge delay's: a copy of this test binary started with
        /// `MIMALLOC_PURGE_DELAY` set reads that value at the index (mimalloc reads its options
        /// from the environment when the process starts).
        #[test]
        fn the_purge_delay_index_names_mimallocs_purge_delay() {
            const CHILD: &str = "VEXIDUS_TEST_EXPECTED_PURGE_DELAY";
            if let Ok(expected) = std::env::var(CHILD) {
                // SAFETY: a plain option read.
                let got = unsafe { super::mi_option_get(super::PURGE_DELAY) };
                assert_eq!(
                    got.to_string(),
                    expected,
                    "option {} is not the purge delay",
                    super::PURGE_DELAY
                );
                return;
            }
            let exe = std::env::current_exe().expect("the test binary's path");
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "allocator::mimalloc_options::tests::the_purge_delay_index_names_mimallocs_purge_delay",
                    "--nocapture",
                ])
                .env("MIMALLOC_PURGE_DELAY", "4321")
                .env(CHILD, "4321")
                .output()
                .expect("the test binary runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("1 passed"),
                "the child failed:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
