//! The execution pool: one thread per core, pinned to its own core when the cores are the
//! process's.

use std::sync::OnceLock;

/// The number of workers: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The execution pool: one thread per core, each pinned to its own core when the process may
/// run on exactly as many CPUs as the pool has threads (see [`pinned_cores`]).
pub(super) fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = pinned_cores();
        rayon::ThreadPoolBuilder::new()
            .num_threads(default_threads())
            .thread_name(|i| format!("vexidus-exec-{i}"))
            .start_handler(move |i| {
                if let Some(&cpu) = cores.and_then(|cores| cores.get(i))
                    && let Err(e) = pin_current_thread(cpu)
                {
                    tracing::warn!(thread = i, cpu, "execution worker not pinned: {e}");
                }
            })
            .build()
            .expect("a thread pool of the machine's size builds")
    })
}

/// The CPUs the execution pool's threads are pinned to, thread `i` to the `i`-th, or `None`
/// when they are not pinned: the process may run on more (or fewer) CPUs than the pool has
/// threads (a CPU quota, or a machine shared by choice), the system does not say which, or
/// `VEXIDUS_PIN_WORKERS=0` is set.
///
/// Why pin: a worker sleeps between blocks and a block's first task wakes it. Linux places a
/// woken thread on the CPU of the thread that woke it when it judges that cache-friendly
/// (wake-affine), and there it waits behind the busy waker until the scheduler's next
/// load-balancing tick moves it to its idle core. Measured on a 2-vCPU VM: the second worker
/// began its first task 1.8-2.4 ms (mean per process) after the block started, up to 4 ms, while
/// a fresh `std::thread` started in 0.2 ms; pinned, it can only wake on its own core and
/// starts in 0.1-0.2 ms.
pub fn pinned_cores() -> Option<&'static [usize]> {
    static CORES: OnceLock<Option<Vec<usize>>> = OnceLock::new();
    CORES
        .get_or_init(|| {
            if std::env::var_os("VEXIDUS_PIN_WORKERS").is_some_and(|v| v == "0") {
                return None;
            }
            let cpus = allowed_cpus()?;
            (cpus.len() == default_threads()).then_some(cpus)
        })
        .as_deref()
}

/// The CPUs the calling thread may run on, in order.
pub(super) fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: `cpu_set_t` is plain bits (all zero is the empty set), and `sched_getaffinity`
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                .collect(),
        )
    }
}

/// Lets the calling thread run on `cpu` only.
pub(super) fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: as in `allowed_cpus`; `CPU_SET` ignores a CPU beyond the set's size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pools_threads_are_pinned_one_to_a_core_when_the_cores_are_theirs() {
        let allowed = allowed_cpus().expect("Linux says which CPUs a thread may use");
        let each: Vec<Vec<usize>> =
            pool().broadcast(|_| allowed_cpus().expect("and it says so on a pool thread"));
        let off = std::env::var_os("VEXIDUS_PIN_WORKERS").is_some_and(|v| v == "0");
        match pinned_cores() {
            Some(cores) => {
                assert!(!off, "pinned although VEXIDUS_PIN_WORKERS=0");
                assert_eq!(cores, allowed.as_slice());
                let one_each: Vec<Vec<usize>> = cores.iter().map(|&cpu| vec![cpu]).collect();
                assert_eq!(each, one_each);
            }
            None => {
                assert!(
                    off || allowed.len() != default_threads(),
                    "not pinned although the process has {} CPUs for {} threads",
                    allowed.len(),
                    default_threads()
                );
                assert!(each.iter().all(|cpus| *cpus == allowed), "{each:?}");
            }
        }
    }
}
