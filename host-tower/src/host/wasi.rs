//! A minimal WASI preview 1, shared by both engine backends.
//!
//! Our own rather than the engines' WASI crates, so that a guest sees the
//! same thing on wasmtime and on wasmer: no file system, no preopened
//! directories, no arguments, the environment only as configured, stdout and
//! stderr sent to `tracing` (escaped and cut to one log line each, see
//! `host::log_line`), real clocks and randomness. Every pointer and length
//! is checked against the guest's memory before the host reads, writes or
//! allocates anything for it. Any other WASI
//! function a module imports is reported at load time, by name.

use super::log_line::{LOG_LINE_LIMIT, log_line};
use super::{GuestMemory, HostError, HostState};
use http_wasm_abi::ValType::{self, I32, I64};

/// The import module name of WASI preview 1.
pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const ENOTSUP: i32 = 58;
const ESPIPE: i32 = 70;

/// The most iovecs one `fd_write` takes (POSIX's usual `IOV_MAX`); more is
/// `EINVAL`, as on Linux.
const IOV_MAX: u32 = 1024;

/// How many random bytes `random_get` writes at a time.
const RANDOM_BLOCK: u32 = 4096;

/// One supported WASI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WasiFunc {
    pub(crate) name: &'static str,
    pub(crate) params: &'static [ValType],
    pub(crate) results: &'static [ValType],
}

const fn f(name: &'static str, params: &'static [ValType], results: &'static [ValType]) -> WasiFunc {
    WasiFunc { name, params, results }
}

/// Every WASI function we provide.
pub(crate) const FUNCS: &[WasiFunc] = &[
    f("args_get", &[I32, I32], &[I32]),
    f("args_sizes_get", &[I32, I32], &[I32]),
    f("environ_get", &[I32, I32], &[I32]),
    f("environ_sizes_get", &[I32, I32], &[I32]),
    f("clock_res_get", &[I32, I32], &[I32]),
    f("clock_time_get", &[I32, I64, I32], &[I32]),
    f("fd_close", &[I32], &[I32]),
    f("fd_fdstat_get", &[I32, I32], &[I32]),
    f("fd_prestat_get", &[I32, I32], &[I32]),
    f("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
    f("fd_read", &[I32, I32, I32, I32], &[I32]),
    f("fd_seek", &[I32, I64, I32, I32], &[I32]),
    f("fd_write", &[I32, I32, I32, I32], &[I32]),
    f("poll_oneoff", &[I32, I32, I32, I32], &[I32]),
    f("proc_exit", &[I32], &[]),
    f("random_get", &[I32, I32], &[I32]),
    f("sched_yield", &[], &[I32]),
];

/// Looks a WASI function up by name.
pub(crate) fn lookup(name: &str) -> Option<&'static WasiFunc> {
    FUNCS.iter().find(|f| f.name == name)
}

fn u32_at(mem: &dyn GuestMemory, ptr: u32) -> Result<u32, HostError> {
    let b = mem.read(ptr, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn put_u32(mem: &mut dyn GuestMemory, ptr: u32, v: u32) -> Result<(), HostError> {
    mem.write(ptr, &v.to_le_bytes())
}

fn put_u64(mem: &mut dyn GuestMemory, ptr: u32, v: u64) -> Result<(), HostError> {
    mem.write(ptr, &v.to_le_bytes())
}

fn now_nanos(clock: i64) -> Option<u64> {
    use std::sync::OnceLock;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};
    static START: OnceLock<Instant> = OnceLock::new();
    match clock {
        0 => SystemTime::now().duration_since(UNIX_EPOCH).ok().map(|d| d.as_nanos() as u64),
        1..=3 => Some(START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1),
        _ => None,
    }
}

/// Runs WASI function `func` with raw `args` (each widened to `i64`).
/// Returns the result, if the function has one.
pub(crate) fn call(
    host: &mut HostState,
    mem: &mut dyn GuestMemory,
    func: &WasiFunc,
    args: &[i64],
) -> Result<Option<i64>, HostError> {
    let a = |i: usize| args[i] as u32;
    let errno = match func.name {
        "args_sizes_get" => {
            put_u32(mem, a(0), 0)?;
            put_u32(mem, a(1), 0)?;
            ESUCCESS
        }
        "args_get" => ESUCCESS,
        "environ_sizes_get" => {
            let env = &host.shared.env;
            put_u32(mem, a(0), env.len() as u32)?;
            put_u32(mem, a(1), env.iter().map(|e| e.len() as u32 + 1).sum())?;
            ESUCCESS
        }
        "environ_get" => {
            let (mut ptrs, mut at) = (a(0), a(1));
            for e in &host.shared.env {
                let oob = HostError::OutOfBounds { ptr: at, len: e.len() as u32 };
                let end = u32::try_from(e.len()).ok().and_then(|n| at.checked_add(n)).ok_or(oob)?;
                put_u32(mem, ptrs, at)?;
                mem.write(at, e)?;
                mem.write(end, &[0])?;
                ptrs = ptrs.checked_add(4).ok_or(HostError::OutOfBounds { ptr: ptrs, len: 4 })?;
                at = end.checked_add(1).ok_or(HostError::OutOfBounds { ptr: end, len: 1 })?;
            }
            ESUCCESS
        }
        "clock_res_get" => match args[0] {
            0..=3 => {
                put_u64(mem, a(1), 1)?;
                ESUCCESS
            }
            _ => EINVAL,
        },
        "clock_time_get" => match now_nanos(args[0]) {
            Some(t) => {
                put_u64(mem, a(2), t)?;
                ESUCCESS
            }
            None => EINVAL,
        },
        "fd_close" => EBADF,
        "fd_fdstat_get" => match args[0] {
            0..=2 => {
                // filetype character_device, no flags, all rights.
                let mut stat = [0u8; 24];
                stat[0] = 2;
                stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
                stat[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
                mem.write(a(1), &stat)?;
                ESUCCESS
            }
            _ => EBADF,
        },
        "fd_prestat_get" | "fd_prestat_dir_name" => EBADF,
        "fd_read" => match args[0] {
            0 => {
                put_u32(mem, a(3), 0)?;
                ESUCCESS
            }
            _ => EBADF,
        },
        "fd_seek" => ESPIPE,
        "fd_write" => {
            let fd = args[0];
            if fd != 1 && fd != 2 {
                return Ok(Some(EBADF as i64));
            }
            let (iovs, n) = (a(1), a(2));
            if n > IOV_MAX {
                return Ok(Some(EINVAL as i64));
            }
            mem.check(iovs, n * 8)?;
            // Every iovec is checked and counted; only the first
            // LOG_LINE_LIMIT bytes are copied out, for the log line.
            let (mut text, mut total) = (Vec::new(), 0u64);
            for i in 0..n {
                let (ptr, len) = (u32_at(mem, iovs + i * 8)?, u32_at(mem, iovs + i * 8 + 4)?);
                mem.check(ptr, len)?;
                total += len as u64;
                let room = (LOG_LINE_LIMIT - text.len()) as u32;
                if room > 0 && len > 0 {
                    text.extend_from_slice(&mem.read(ptr, len.min(room))?);
                }
            }
            let written = u32::try_from(total).map_err(|_| HostError::TooLong)?;
            put_u32(mem, a(3), written)?;
            let msg = log_line(&text, total as usize);
            let plugin = &*host.shared.name;
            if fd == 1 {
                tracing::info!(target: "http_wasm::guest::stdout", plugin, "{msg}");
            } else {
                tracing::warn!(target: "http_wasm::guest::stderr", plugin, "{msg}");
            }
            ESUCCESS
        }
        "poll_oneoff" => ENOTSUP,
        "proc_exit" => return Err(HostError::Exit(args[0] as i32)),
        "random_get" => {
            let (ptr, len) = (a(0), a(1));
            mem.check(ptr, len)?;
            // Filled in place, a block at a time: nothing is allocated in
            // proportion to the length the guest asks for.
            let mut failed = false;
            let mut at = 0;
            while at < len {
                let n = (len - at).min(RANDOM_BLOCK);
                mem.write_with(ptr + at, n, &mut |dst| failed |= getrandom::fill(dst).is_err())?;
                at += n;
            }
            if failed { ENOTSUP } else { ESUCCESS }
        }
        "sched_yield" => ESUCCESS,
        _ => ENOTSUP,
    };
    Ok(Some(errno as i64))
}
