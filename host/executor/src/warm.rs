//! Warm instances: one runtime instance serves many calls and is put back, after each, into
//! exactly the state a fresh instance starts in.
//!
//! A fresh instance per call costs a store, an instantiation, and when it is dropped the pooling
//! allocator's reset of its memory and of its table (a `PAGEMAP_SCAN` ioctl each, plus the
//! pool's shared locks): about a third of a transfer's time in wasm. A warm instance pays only
//! the reset of its memory: one scan of the initial memory for the pages the call wrote, which
//! are copied back from a snapshot of the memory as instantiated, and its mutable globals set
//! back to their initial values.
//!
//! A call must observe nothing of the calls before it: Block-STM runs a block's calls in an
//! order that differs from node to node, so anything left behind would make execution
//! nondeterministic. Restoring memory and globals is enough exactly when they are a module's
//! only state the host cannot see unchanged, which [`Plan::for_module`] checks statically:
//!
//! - no start function (its fuel would be charged to every fresh call and to no warm one);
//! - every mutable global is exported (the host reaches a global only through an export; the
//!   runtime build exports the toolchain's `__stack_pointer` for this);
//! - no instruction changes a table or drops a segment (`table.set`, `table.grow`,
//!   `table.fill`, `table.copy`, `table.init`, `elem.drop`, `data.drop`), so tables and
//!   segments keep their instantiated contents.
//!
//! A module that fails a check runs in a fresh instance per call, as before. At run time an
//! instance is dropped instead of reused after a call that failed (a trap, fuel, a host error),
//! grew its memory, or wrote more than [`MAX_DIRTY_BYTES`], and when the scan is unavailable
//! (Linux before 6.7, another OS, a forked child).
//!
//! Most calls skip the scan. A page joins the written ones only through a page fault (a write
//! to a page that is missing, the shared zero page or a read-only page of the module's image),
//! and the kernel counts every fault against the thread that took it. Transparent huge pages
//! are turned off for instance memories (`MADV_NOHUGEPAGE`): a huge page that khugepaged
//! assembled would make later writes to its pages fault-free. So when the thread that
//! restored an instance last has taken no fault since, the pages written are the ones the last
//! scan found (see `Faults`), and the restore copies those back without asking the kernel. In
//! debug builds every restore scans anyway and checks that claim.

use super::{HostState, MEMORY_LIMIT_BYTES};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use wasmparser::{Operator, Parser, Payload};
use wasmtime::{Func, Global, InstancePre, Memory, Store, StoreLimitsBuilder, Val};

/// Most memory a call may write and still leave its instance warm. Every page a warm instance
/// ever wrote is copied back after each later call (the scan finds private pages, and a page
/// stays private after it is restored), so an instance some large call dirtied is dropped and
/// its memory returned to the kernel rather than costing every later call. A transfer writes
/// about 24 KiB.
pub const MAX_DIRTY_BYTES: usize = 64 * 1024;

/// What restoring an instance of one module takes, decided from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Export names of the module's mutable globals.
    globals: Vec<String>,
}

impl Plan {
    /// The plan for `code`, or why its instances cannot be reused.
    pub fn for_module(code: &[u8]) -> Result<Plan, String> {
        let mut mutable = Vec::new(); // indices of defined mutable globals
        let mut imported_globals = 0u32;
        let mut exported: Vec<(u32, String)> = Vec::new();
        for payload in Parser::new(0).parse_all(code) {
            let payload = payload.map_err(|e| e.to_string())?;
            match payload {
                Payload::StartSection { .. } => return Err("it has a start function".into()),
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import.map_err(|e| e.to_string())?;
                        match import.ty {
                            wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::Tag(_) => {}
                            wasmparser::TypeRef::Global(_) => imported_globals += 1,
                            _ => return Err(format!("it imports `{}`", import.name)),
                        }
                    }
                }
                Payload::GlobalSection(reader) => {
                    for (i, global) in reader.into_iter().enumerate() {
                        let global = global.map_err(|e| e.to_string())?;
                        if global.ty.mutable {
                            mutable.push(imported_globals + i as u32);
                        }
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export.map_err(|e| e.to_string())?;
                        if export.kind == wasmparser::ExternalKind::Global {
                            exported.push((export.index, export.name.to_string()));
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                    while !ops.eof() {
                        let op = ops.read().map_err(|e| e.to_string())?;
                        if let Some(name) = mutates_instance(&op) {
                            return Err(format!("it uses `{name}`"));
                        }
                    }
                }
                _ => {}
            }
        }
        let mut globals = Vec::with_capacity(mutable.len());
        for index in mutable {
            match exported.iter().find(|(i, _)| *i == index) {
                Some((_, name)) => globals.push(name.clone()),
                None => return Err(format!("its mutable global {index} is not exported")),
            }
        }
        Ok(Plan { globals })
    }
}

/// The instructions that change an instance's state other than its memory and globals.
fn mutates_instance(op: &Operator<'_>) -> Option<&'static str> {
    Some(match op {
        Operator::TableSet { .. } => "table.set",
        Operator::TableGrow { .. } => "table.grow",
        Operator::TableFill { .. } => "table.fill",
        Operator::TableCopy { .. } => "table.copy",
        Operator::TableInit { .. } => "table.init",
        Operator::ElemDrop { .. } => "elem.drop",
        Operator::DataDrop { .. } => "data.drop",
        _ => return None,
    })
}

/// The state every instance of a module starts in: its memory and its mutable globals right
/// after instantiation.
struct Snapshot {
    memory: Box<[u8]>,
    globals: Vec<Val>,
}

/// An instance ready for a call, with the handles a call needs.
pub struct Warm {
    pub(super) store: Store<HostState>,
    pub(super) memory: Memory,
    pub(super) alloc: Func,
    /// The entry points, in the order of the prototype's `Exports::entries`.
    pub(super) entries: Vec<Func>,
    globals: Vec<Global>,
    /// The runs of pages the last scan found written: every page of the memory outside them
    /// is missing, the zero page or a page of the module's image.
    written: Vec<Region>,
    /// The fault count of the thread that last restored the instance, read before it copied
    /// pages back; `None` before the first restore.
    faults: Option<Faults>,
    /// Whether a restore may skip the scan when the fault count is unchanged: only when the
    /// memory can never be given huge pages ([`no_huge_pages`]).
    skip_allowed: bool,
    _live: Live,
}

/// Advises the kernel never to back `base..base + len` with transparent huge pages, and says
/// whether it will not. Without this, khugepaged (a kernel thread) may collapse the memory's
/// pages into a huge page with no fault on any thread of ours; from then on a write to a page
/// the last scan did not find takes no fault either, and a restore that skipped the scan on an
/// unchanged fault count would leave it written: one call's state seen by the next. A kernel
/// built without huge pages refuses the advice with `EINVAL` and has no khugepaged; any other
/// refusal leaves the instance scanning on every restore.
pub(super) fn no_huge_pages(base: *mut u8, len: usize) -> bool {
    // SAFETY: advice only; the range is mapped (the instance's linear memory) and stays so.
    let r = unsafe { libc::madvise(base.cast(), len, libc::MADV_NOHUGEPAGE) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
}

/// Most warm instances alive at once in the process, idle or in a call: half of the engine's
/// instance slots, so calls in fresh instances always find one. Idle instances stay with their
/// `Prototype`, and the executor keeps every prototype it made (each runtime upgrade adds
/// one), so without a cap old runtimes' idle instances could take every slot.
pub const MAX_LIVE: usize = 128;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One of the [`MAX_LIVE`] warm instances, given back when dropped.
struct Live;

impl Live {
    fn take() -> Option<Live> {
        if LIVE.fetch_add(1, Ordering::Relaxed) < MAX_LIVE {
            Some(Live)
        } else {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Warm instances of one module, each in its own store.
pub struct Pool {
    plan: Plan,
    snapshot: OnceLock<Snapshot>,
    /// Idle instances, in shards a thread keeps to (see [`Shard::mine`]), so Block-STM's
    /// workers do not take each other's lock (or its cache line) on every call.
    shards: Box<[Shard]>,
}

/// Idle instances one shard keeps. Each holds a slot of the engine's instance pool.
const IDLE_PER_SHARD: usize = 2;

#[repr(align(128))] // a cache line pair of its own
#[derive(Default)]
struct Shard(Mutex<Idle>);

#[derive(Default)]
struct Idle {
    warm: Vec<Warm>,
    reuses: u64,
    /// Restores that copied pages back without a scan.
    unscanned: u64,
}

impl Shard {
    /// Shards a pool has: one per core for Block-STM's workers and a few for the consensus and
    /// RPC threads.
    fn count() -> usize {
        // Asked once: `available_parallelism` reads cgroup files under /proc on every call.
        static COUNT: OnceLock<usize> = OnceLock::new();
        *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()) + 4)
    }

    /// This thread's shard of `shards`, by its [`thread_number`].
    fn mine(shards: &[Shard]) -> &Shard {
        &shards[(thread_number() % shards.len() as u64) as usize]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Pool {
    /// A pool for instances of a module with this plan, or `None` where instances cannot be
    /// restored (no page scan here).
    pub fn new(plan: Plan) -> Option<Pool> {
        if !PageMap::available() {
            return None;
        }
        Some(Pool {
            plan,
            snapshot: OnceLock::new(),
            shards: (0..Shard::count()).map(|_| Shard::default()).collect(),
        })
    }

    /// Calls that ran in an instance an earlier call had used.
    pub fn reuses(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().reuses).sum()
    }

    /// Restores that found the pages to copy back without a scan.
    pub fn unscanned(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().unscanned).sum()
    }

    /// An idle instance, or a new one.
    pub(super) fn take(
        &self,
        pre: &InstancePre<HostState>,
        exports: &super::Exports,
    ) -> Result<Warm, String> {
        let idle = {
            let mut idle = Shard::mine(&self.shards).lock();
            let warm = idle.warm.pop();
            idle.reuses += warm.is_some() as u64;
            warm
        };
        match idle {
            Some(warm) => Ok(warm),
            None => self.instantiate(pre, exports),
        }
    }

    fn instantiate(
        &self,
        pre: &InstancePre<HostState>,
        exports: &super::Exports,
    ) -> Result<Warm, String> {
        let live = Live::take().ok_or("as many warm instances as allowed are alive")?;
        let mut store = super::new_store(None);
        let instance = pre.instantiate(&mut store).map_err(|e| format!("{e:#}"))?;
        let memory = exports
            .bind_memory(&instance, &mut store)
            .map_err(|e| e.to_string())?;
        let func = |store: &mut Store<HostState>, export| {
            super::Exports::func(&instance, store, export).map_err(|e| e.to_string())
        };
        let skip_allowed = no_huge_pages(memory.data_ptr(&store), memory.data_size(&store));
        let alloc = func(&mut store, &exports.alloc)?;
        let mut entries = Vec::with_capacity(exports.entries.len());
        for (_, export) in &exports.entries {
            entries.push(func(&mut store, export)?);
        }
        let mut globals = Vec::with_capacity(self.plan.globals.len());
        for name in &self.plan.globals {
            globals.push(
                instance
                    .get_global(&mut store, name)
                    .ok_or_else(|| format!("global `{name}` is not exported"))?,
            );
        }
        // Nothing has run in it yet: every instance of the module starts like this one.
        self.snapshot.get_or_init(|| Snapshot {
            memory: memory.data(&store).into(),
            globals: globals.iter().map(|g| g.get(&mut store)).collect(),
        });
        Ok(Warm {
            store,
            memory,
            alloc,
            entries,
            globals,
            written: Vec::with_capacity(MAX_REGIONS),
            faults: None,
            skip_allowed,
            _live: live,
        })
    }

    /// Restores `warm` after a call that succeeded and keeps it for the next call; drops it
    /// where it cannot be restored cheaply.
    pub(super) fn put_back(&self, mut warm: Warm) {
        warm.store.data_mut().finish_call();
        let Some(snapshot) = self.snapshot.get() else {
            return;
        };
        let unscanned = match warm.restore(snapshot) {
            Restored::Yes { scanned } => !scanned,
            Restored::TooDirty => {
                // Give the pages back before wasmtime resets the slot, so the next instance in
                // it starts clean instead of with this call's working set private.
                warm.decommit();
                return;
            }
            Restored::No => return,
        };
        let mut idle = Shard::mine(&self.shards).lock();
        idle.unscanned += unscanned as u64;
        if idle.warm.len() < IDLE_PER_SHARD {
            idle.warm.push(warm);
        }
    }
}

enum Restored {
    /// Back in the state it was instantiated in; `scanned` if the page table was read for it.
    Yes { scanned: bool },
    /// The call wrote more than [`MAX_DIRTY_BYTES`].
    TooDirty,
    /// The memory grew, or the scan failed.
    No,
}

impl Warm {
    fn restore(&mut self, snapshot: &Snapshot) -> Restored {
        let len = self.memory.data_size(&self.store);
        if len != snapshot.memory.len() {
            return Restored::No;
        }
        let base = self.memory.data_ptr(&self.store);
        // Read before any page is copied back: a fault the copying takes (a written page the
        // kernel swapped out, say) then makes the next restore scan.
        let faults = Faults::now();
        let unchanged = self.skip_allowed && faults.is_some() && faults == self.faults;
        let scan = !unchanged || cfg!(debug_assertions);
        if scan {
            let mut regions = [Region::default(); MAX_REGIONS];
            // SAFETY: `base..base + len` is this instance's linear memory, mapped for as long
            // as the store lives; the scan only reads page tables.
            let Some(found) =
                PageMap::with(|pagemap| unsafe { pagemap.written(base, len, &mut regions) })
                    .flatten()
            else {
                return Restored::No;
            };
            if unchanged {
                debug_assert!(
                    found.iter().all(|f| self
                        .written
                        .iter()
                        .any(|w| w.start <= f.start && f.end <= w.end)),
                    "pages {found:x?} were written without a page fault on this thread; \
                     the last scan found {:x?}",
                    self.written
                );
            } else {
                self.written.clear();
                self.written.extend_from_slice(found);
            }
        }
        self.faults = faults;
        let dirty: usize = self
            .written
            .iter()
            .map(|r| (r.end - r.start) as usize)
            .sum();
        if dirty > MAX_DIRTY_BYTES {
            return Restored::TooDirty;
        }
        let memory = self.memory.data_mut(&mut self.store);
        for r in &self.written {
            let start = r.start as usize - base as usize;
            let end = r.end as usize - base as usize;
            memory[start..end].copy_from_slice(&snapshot.memory[start..end]);
        }
        for (global, value) in self.globals.iter().zip(&snapshot.globals) {
            if global.set(&mut self.store, *value).is_err() {
                return Restored::No;
            }
        }
        Restored::Yes {
            scanned: !unchanged,
        }
    }

    /// Returns the instance's memory to the kernel: its pages read again as the module's image
    /// and zeros.
    fn decommit(&mut self) {
        let base = self.memory.data_ptr(&self.store);
        let len = self.memory.data_size(&self.store);
        // SAFETY: the range is this instance's linear memory, which no call is using; after
        // `MADV_DONTNEED` its private pages are dropped and read back from the copy-on-write
        // image or as zeros, which is the state wasmtime resets the slot to anyway.
        unsafe {
            libc::madvise(base.cast(), len, libc::MADV_DONTNEED);
        }
    }
}

impl HostState {
    /// The state of a store before any call.
    pub(super) fn new(ext: Option<*mut (dyn super::Externalities + 'static)>) -> Self {
        HostState {
            ext,
            memory: None,
            limits: StoreLimitsBuilder::new()
                .memory_size(MEMORY_LIMIT_BYTES)
                .trap_on_grow_failure(true)
                .build(),
            logs: Vec::new(),
            storage_error: None,
            stack_height: None,
        }
    }

    /// Forgets the call that ran: its storage, its logs and its storage error.
    fn finish_call(&mut self) {
        self.ext = None;
        self.logs.clear();
        self.storage_error = None;
    }
}

/// This thread's number: threads are numbered as they first ask, and a number is never reused.
fn thread_number() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    thread_local! {
        static MINE: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    MINE.with(|n| *n)
}

/// The page faults a thread has taken so far, with the thread.
///
/// The kernel counts each fault against the thread that took it, and every way for a page of
/// an instance's memory to become written goes through a fault: a write to a missing page, to
/// the shared zero page, or to a read-only page of the module's copy-on-write image. (A write
/// the kernel makes for a system call faults the same way, on the calling thread.) Two equal
/// readings on one thread therefore mean no page became written in between, on that thread;
/// an instance is only used by the thread that holds it. Threads are told apart by their
/// [`thread_number`], so a thread that exits and one that starts later never compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Faults {
    thread: u64,
    count: u64,
}

impl Faults {
    /// This thread's reading, or `None` if the kernel would not say.
    fn now() -> Option<Faults> {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: `getrusage` fills the whole `rusage` when it returns 0.
        let usage = unsafe {
            if libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) != 0 {
                return None;
            }
            usage.assume_init()
        };
        Some(Faults {
            thread: thread_number(),
            count: (usage.ru_minflt as u64).wrapping_add(usage.ru_majflt as u64),
        })
    }
}

/// Regions one scan reports at most: a call's writes fall in a few runs of pages (stack, data,
/// heap); a scan that finds more leaves the instance to be dropped.
const MAX_REGIONS: usize = 32;

/// `struct page_region` of the `PAGEMAP_SCAN` ioctl.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct Region {
    start: u64,
    end: u64,
    categories: u64,
}

/// `struct pm_scan_arg` of the `PAGEMAP_SCAN` ioctl (linux/fs.h).
#[repr(C)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 = (3 << 30) | ((size_of::<ScanArg>() as u64) << 16) | (0x66 << 8) | 16;

/// A descriptor of this process's `/proc/self/pagemap`, where the `PAGEMAP_SCAN` ioctl works.
///
/// Each thread scans through a descriptor of its own ([`PageMap::with`]): the kernel takes and
/// drops a reference to the open file on every ioctl of a multithreaded process, and with one
/// descriptor shared by Block-STM's workers that reference count was a cache line the cores
/// took from each other twice a call (`fdget` was about 1% of a block's samples).
struct PageMap(std::fs::File);

/// Set in a forked child: its inherited descriptors read the parent's page tables.
static FORKED: AtomicBool = AtomicBool::new(false);

impl PageMap {
    /// Whether the scan works here (Linux 6.7 or later, `/proc` mounted), asked once per
    /// process; false in a forked child.
    fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        let available = *AVAILABLE.get_or_init(|| {
            extern "C" fn forked() {
                FORKED.store(true, Ordering::Relaxed);
            }
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            PageMap::open().is_some()
                && unsafe { libc::pthread_atfork(None, None, Some(forked)) } == 0
        });
        available && !FORKED.load(Ordering::Relaxed)
    }

    /// A new descriptor, if the ioctl works on it.
    fn open() -> Option<PageMap> {
        let map = PageMap(std::fs::File::open("/proc/self/pagemap").ok()?);
        let mut probe = [Region::default(); 1];
        // SAFETY: an empty range: the ioctl reads no page table and writes nothing.
        unsafe { map.written(std::ptr::null_mut(), 0, &mut probe) }?;
        Some(map)
    }

    /// `f` of this thread's descriptor (opened on the thread's first scan, closed when it
    /// exits), or `None` where the scan does not work.
    fn with<R>(f: impl FnOnce(&PageMap) -> R) -> Option<R> {
        thread_local! {
            static MINE: Option<PageMap> = PageMap::open();
        }
        if !PageMap::available() {
            return None;
        }
        MINE.with(|mine| mine.as_ref().map(f))
    }

    /// The runs of pages in `base..base + len` that a call wrote: present (or swapped out) and
    /// neither the shared zero page nor a page of the module's image. `None` if the ioctl
    /// failed or stopped before the end (more runs than `out` holds).
    ///
    /// # Safety
    ///
    /// `base..base + len` must be mapped memory of this process, page-aligned.
    unsafe fn written<'a>(
        &self,
        base: *mut u8,
        len: usize,
        out: &'a mut [Region],
    ) -> Option<&'a [Region]> {
        use std::os::fd::AsRawFd;
        let start = base as u64;
        let end = start + len as u64;
        let mut arg = ScanArg {
            size: size_of::<ScanArg>() as u64,
            flags: 0,
            start,
            end,
            walk_end: 0,
            vec: out.as_mut_ptr() as u64,
            vec_len: out.len() as u64,
            max_pages: 0,
            // Not the zero page and not a file page (both bits must read 1 once inverted)...
            category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
            category_mask: PAGE_IS_PFNZERO | PAGE_IS_FILE,
            // ...and in memory or swapped out.
            category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            // Report no categories, so adjacent pages merge into one run.
            return_mask: 0,
        };
        // SAFETY: `arg` is a valid `pm_scan_arg` whose `vec` points to `out.len()` writable
        // `page_region`s; the kernel writes only there and into `arg`.
        let n = unsafe { libc::ioctl(self.0.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
        if n < 0 || arg.walk_end < end {
            return None;
        }
        out.get(..n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::Faults;

    /// A fresh private anonymous mapping of `len` bytes (the caller unmaps it).
    fn anonymous(len: usize) -> *mut libc::c_void {
        // SAFETY: a new mapping at an address of the kernel's choice; nothing else refers to it.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        map
    }

    /// The advice lands: the kernel lists the range with the `nh` (no huge pages) flag.
    #[test]
    fn memory_advised_against_huge_pages_is_flagged_so_by_the_kernel() {
        const LEN: usize = 4 << 20;
        let map = anonymous(LEN);
        assert!(super::no_huge_pages(map.cast(), LEN));
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let start = format!("{:x}-", map as usize);
        let entry = smaps
            .split_inclusive('\n')
            .skip_while(|l| !l.starts_with(&start))
            .take_while(|l| !l.starts_with("VmFlags:"))
            .count();
        let flags = smaps
            .split_inclusive('\n')
            .skip_while(|l| !l.starts_with(&start))
            .nth(entry)
            .expect("the mapping's VmFlags line");
        let thp_built_in = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
        assert!(
            !thp_built_in || flags.split_whitespace().any(|f| f == "nh"),
            "{flags}"
        );
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(map, LEN) };
    }

    /// Writing a page the process never touched takes a fault, and the kernel counts it on the
    /// thread that wrote; another thread's reading is never equal to this one's.
    #[test]
    fn a_first_write_to_a_page_moves_the_threads_fault_count() {
        const LEN: usize = 16 * 4096;
        let map = anonymous(LEN);
        let pages = map.cast::<u8>();
        for page in 0..16 {
            let before = Faults::now().expect("getrusage");
            // SAFETY: inside the mapping.
            unsafe { pages.add(page * 4096).write_volatile(1) };
            let after = Faults::now().expect("getrusage");
            assert_eq!(before.thread, after.thread);
            assert!(
                after.count > before.count,
                "page {page}: {before:?} then {after:?}"
            );
        }
        let other = std::thread::spawn(|| Faults::now().expect("getrusage"))
            .join()
            .expect("thread");
        assert_ne!(other.thread, Faults::now().expect("getrusage").thread);
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(map, LEN) };
    }
}
