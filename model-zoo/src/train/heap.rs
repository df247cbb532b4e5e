//! Training on Burn's CPU backend allocates fresh buffers for every tensor of every step.
//! glibc hands large freed blocks straight back to the kernel (they are mmapped, or trimmed
//! off the heap's top), so the next step page-faults the same memory in again: about a fifth
//! of a training run's CPU time went to the kernel (`perf`, the encoder probe). Told to keep
//! freed memory for reuse, glibc spends almost none there. Its tunables are read only at
//! start-up, so a training process restarts itself with them set.

use std::ffi::{OsStr, OsString};

/// Every block comes from the heap, none from a mapping of its own (which glibc gives any
/// block over 128 KiB to 32 MiB, and every larger one), and the heap is trimmed only once
/// 1 GiB lies free at its top.
const KEEP_FREED_MEMORY: &str = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824";

/// Tunables that, set at all, mean the allocator's thresholds are already chosen.
const THRESHOLDS: [&str; 3] = [
    "glibc.malloc.mmap_threshold",
    "glibc.malloc.mmap_max",
    "glibc.malloc.trim_threshold",
];

/// The variable glibc reads its tunables from.
pub const TUNABLES_VARIABLE: &str = "GLIBC_TUNABLES";

/// Restarts this process (same executable, arguments and PID) with glibc's allocator told
/// to keep freed memory, unless its allocator settings are already chosen: by this restart
/// or by the operator's own `GLIBC_TUNABLES`. Returns only when there is nothing to do, on
/// other C libraries than glibc, or when the restart failed (the error; the process then
/// goes on as it is).
pub fn restart_keeping_freed_memory() -> std::io::Result<()> {
    let Some(tunables) = tunables_to_set(std::env::var_os(TUNABLES_VARIABLE).as_deref()) else {
        return Ok(());
    };
    restart_with(tunables)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart_with(tunables: OsString) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let program = std::env::current_exe()?;
    let mut command = std::process::Command::new(program);
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    // `exec` replaces this process; it returns only with the reason it could not.
    Err(command.args(args).env(TUNABLES_VARIABLE, tunables).exec())
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restart_with(_: OsString) -> std::io::Result<()> {
    Ok(())
}

/// What `GLIBC_TUNABLES` should become: the operator's tunables with ours added, or `None`
/// when the allocator's thresholds are already set (so a restarted process never restarts
/// again, and an operator's own choice stands).
fn tunables_to_set(current: Option<&OsStr>) -> Option<OsString> {
    let current = current.unwrap_or_default();
    let text = current.to_string_lossy();
    if THRESHOLDS.iter().any(|name| text.contains(name)) {
        return None;
    }
    let mut tunables = current.to_os_string();
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(KEEP_FREED_MEMORY);
    Some(tunables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_environment_gets_the_thresholds() {
        assert_eq!(tunables_to_set(None), Some(KEEP_FREED_MEMORY.into()));
        assert_eq!(
            tunables_to_set(Some(OsStr::new(""))),
            Some(KEEP_FREED_MEMORY.into())
        );
    }

    #[test]
    fn other_tunables_are_kept_beside_the_thresholds() {
        let set = tunables_to_set(Some(OsStr::new("glibc.malloc.arena_max=2"))).unwrap();
        assert_eq!(
            set,
            OsString::from(format!("glibc.malloc.arena_max=2:{KEEP_FREED_MEMORY}"))
        );
    }

    #[test]
    fn thresholds_already_chosen_stand_and_nothing_restarts_twice() {
        assert_eq!(tunables_to_set(Some(OsStr::new(KEEP_FREED_MEMORY))), None);
        for operators in THRESHOLDS.map(|name| format!("glibc.malloc.arena_max=2:{name}=0")) {
            assert_eq!(tunables_to_set(Some(OsStr::new(&operators))), None);
        }
    }
}
