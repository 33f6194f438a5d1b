//! The module's global allocator (crate feature `talc`, on by default).
//!
//! On single-threaded wasm the SDK installs [talc](https://docs.rs/talc) as
//! the `#[global_allocator]` in place of the standard library's (dlmalloc on
//! `wasm32-unknown-unknown`, wasi-libc's `malloc` on `wasm32-wasip1`).
//! Blocks are freed and reused as usual; when none fits, talc takes the
//! pages it needs with `memory.grow` as a new heap of its own
//! ([`WasmGrowAndClaim`](talc::wasm::WasmGrowAndClaim): smaller code than
//! extending the previous heap, at the price of some fragmentation across
//! heaps). In the `guest` profile this makes the header-validation example
//! 5.9 KB smaller on `wasm32-unknown-unknown` (13,873 to 7,999 bytes;
//! extending the previous heap instead costs about 200 bytes more) and 1.4 KB smaller on
//! `wasm32-wasip1` (32,736 to 31,313 bytes).
//!
//! No `unsafe` is needed: talc's wasm constructor checks at compile time
//! that the target has no threads (no `atomics` target feature), the one
//! condition under which its lock-free cell is sound, and this module is
//! only compiled under that condition (a threaded build keeps the standard
//! allocator).
//!
//! A filter that wants another global allocator turns the feature off
//! (`default-features = false`): two global allocators do not link.

use talc::cell::TalcSyncCell;
use talc::wasm::{WasmBinning, WasmGrowAndClaim};

#[global_allocator]
static ALLOCATOR: TalcSyncCell<WasmGrowAndClaim, WasmBinning> = TalcSyncCell::new_wasm(WasmGrowAndClaim);
