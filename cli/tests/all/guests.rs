//! Test guests, hand-written in WAT.

/// A module importing every host function, with `body` (which
/// defines `handle_request` and `handle_response`, and may add data and
/// globals). 48 pages of memory (3 MiB), and two helpers: `$value(name,
/// len) -> len` puts the first value of a request header at 1024 (-1 when
/// absent), `$number(ptr, len)` parses a decimal.
pub fn module(body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
{imports}  (memory (export "memory") 48)
  ;; The first value of request header (p, n) at 1024: its length, or -1.
  (func $value (param $p i32) (param $n i32) (result i32) (local $i i32)
    (if (i64.eqz (call $get_header_values (i32.const 0) (local.get $p) (local.get $n) (i32.const 1024) (i32.const 1024)))
      (then (return (i32.const -1))))
    (block $done (loop $scan
      (br_if $done (i32.eqz (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (local.get $i))

  ;; The decimal number at (p, n).
  (func $number (param $p i32) (param $n i32) (result i32) (local $v i32) (local $i i32)
    (block $done (loop $digit
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $v (i32.add (i32.mul (local.get $v) (i32.const 10))
        (i32.sub (i32.load8_u (i32.add (local.get $p) (local.get $i))) (i32.const 48))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $digit)))
    (local.get $v))

  ;; Sets header (p, n) of `kind` to the decimal of v (digits written
  ;; backwards from 2079).
  (func $set_decimal (param $kind i32) (param $p i32) (param $n i32) (param $v i32) (local $i i32)
    (local.set $i (i32.const 2079))
    (loop $digit
      (i32.store8 (local.get $i) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $digit (i32.ne (local.get $v) (i32.const 0))))
    (call $set_header_value (local.get $kind) (local.get $p) (local.get $n)
      (i32.add (local.get $i) (i32.const 1)) (i32.sub (i32.const 2079) (local.get $i))))

{body}
)"#,
        imports = tower_http_wasm::testing::wat_imports()
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad test WAT: {e}\n{text}"))
}

/// Answers every request, without next, with its configuration bytes as
/// the body.
pub fn config_echo() -> Vec<u8> {
    module(
        r#"(func (export "handle_request") (result i64) (local $n i32)
    (local.set $n (call $get_config (i32.const 0) (i32.const 0)))
    (drop (call $get_config (i32.const 1024) (local.get $n)))
    (call $write_body (i32.const 1) (i32.const 1024) (local.get $n))
    (i64.const 0))
  (func (export "handle_response") (param i32 i32))"#,
    )
}

/// Calls next; in `handle_response` logs `saw is_error=N` at info and, when
/// `trap_on_response`, traps.
pub fn next_and_log(trap_on_response: bool) -> Vec<u8> {
    let trap = if trap_on_response { "unreachable" } else { "" };
    module(&format!(
        r#"(data (i32.const 0) "saw is_error=0")
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param $ctx i32) (param $is_error i32)
    (i32.store8 (i32.const 13) (i32.add (i32.const 48) (local.get $is_error)))
    (call $log (i32.const 0) (i32.const 0) (i32.const 14))
    {trap})"#
    ))
}

/// Calls next. Before: sets request header `host` to the value of
/// `x-set-host` when there is one, and copies the `x-forwarded-for` it sees
/// to response header `x-filter-xff`.
pub fn edge() -> Vec<u8> {
    module(
        r#"(data (i32.const 0) "x-set-host")
  (data (i32.const 16) "host")
  (data (i32.const 32) "x-forwarded-for")
  (data (i32.const 48) "x-filter-xff")
  (func (export "handle_request") (result i64) (local $n i32)
    (local.set $n (call $value (i32.const 0) (i32.const 10)))
    (if (i32.ge_s (local.get $n) (i32.const 0))
      (then (call $set_header_value (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 1024) (local.get $n))))
    (local.set $n (call $value (i32.const 32) (i32.const 15)))
    (if (i32.ge_s (local.get $n) (i32.const 0))
      (then (call $set_header_value (i32.const 1) (i32.const 48) (i32.const 12) (i32.const 1024) (local.get $n))))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32))"#,
    )
}

/// The byte at `i` of a test pattern with `seed`: no period shorter than
/// 2 MiB, so a lost, repeated or misplaced chunk shows.
pub fn pattern_byte(i: usize, seed: u32) -> u8 {
    let i = i as u32;
    (i.wrapping_mul(7).wrapping_add(seed) ^ (i >> 7) ^ (i >> 13)) as u8
}

/// `n` bytes of the pattern with `seed`.
pub fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n).map(|i| pattern_byte(i, seed)).collect()
}

/// The seeds of the model guest's patterns.
pub const SEED_REQUEST: u32 = 1;
pub const SEED_BEFORE: u32 = 2;
pub const SEED_AFTER: u32 = 3;

/// The model guest, driven by request headers (each optional, first value
/// read):
///
/// | header | action |
/// |---|---|
/// | `x-g-buffer` | `enable_features(buffer_response)` for this request |
/// | `x-g-req-body: R<n>` | replace the request body with `pattern(n, 1)` (two writes) |
/// | `x-g-req-body: A<n>` | read the whole request body, write it back, then `pattern(n, 1)` |
/// | `x-g-req-set: V` | set request header `x-guest-req: V` |
/// | `x-g-req-rm` | remove request header `x-victim` |
/// | `x-g-res-set: B<v>` / `A<v>` | set response header `x-guest-res: v` before / after next |
/// | `x-g-res-rm` | after next, remove response header `x-up-victim` |
/// | `x-g-res-body: B<n>` | before next, write `pattern(n, 2)` as the response body |
/// | `x-g-res-body: R<n>` / `A<n>` | after next, replace the response body with `pattern(n, 3)` / append it |
/// | `x-g-respond: S` | answer with status `S` without next |
///
/// After-next actions need `x-g-buffer` (else the guest fails: 500).
pub fn model() -> Vec<u8> {
    // Memory: names at 0.., a header value at 1024 (up to 1 KiB), the saved
    // after-next header value at 2048, bodies read at 64 KiB (up to 1 MiB),
    // patterns built at 1 MiB + 64 KiB (up to 1 MiB).
    module(
        r#"(data (i32.const 0) "x-g-buffer")
  (data (i32.const 16) "x-g-req-body")
  (data (i32.const 32) "x-g-req-set")
  (data (i32.const 48) "x-g-req-rm")
  (data (i32.const 64) "x-g-res-set")
  (data (i32.const 80) "x-g-res-rm")
  (data (i32.const 96) "x-g-res-body")
  (data (i32.const 112) "x-g-respond")
  (data (i32.const 128) "x-guest-req")
  (data (i32.const 144) "x-victim")
  (data (i32.const 160) "x-guest-res")
  (data (i32.const 176) "x-up-victim")
  (global $set_len (mut i32) (i32.const -1))
  (global $rm (mut i32) (i32.const 0))
  (global $body_mode (mut i32) (i32.const 0))
  (global $body_n (mut i32) (i32.const 0))

  ;; Writes pattern(n, seed) to body `kind` in two writes.
  (func $write_pattern (param $kind i32) (param $n i32) (param $seed i32) (local $i i32) (local $half i32)
    (block $done (loop $fill
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (i32.const 1114112) (local.get $i))
        (i32.xor (i32.xor (i32.add (i32.mul (local.get $i) (i32.const 7)) (local.get $seed))
                          (i32.shr_u (local.get $i) (i32.const 7)))
                 (i32.shr_u (local.get $i) (i32.const 13))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $fill)))
    (local.set $half (i32.shr_u (local.get $n) (i32.const 1)))
    (call $write_body (local.get $kind) (i32.const 1114112) (local.get $half))
    (call $write_body (local.get $kind) (i32.add (i32.const 1114112) (local.get $half))
      (i32.sub (local.get $n) (local.get $half))))

  ;; Reads the whole body `kind` to 64 KiB and writes it back (the first
  ;; write of the phase: it replaces the body).
  (func $read_and_keep (param $kind i32) (local $len i32) (local $r i64)
    (loop $more
      (local.set $r (call $read_body (local.get $kind) (i32.add (i32.const 65536) (local.get $len))
        (i32.sub (i32.const 1048576) (local.get $len))))
      (local.set $len (i32.add (local.get $len) (i32.wrap_i64 (local.get $r))))
      (br_if $more (i64.eqz (i64.shr_u (local.get $r) (i64.const 32)))))
    (call $write_body (local.get $kind) (i32.const 65536) (local.get $len)))

  (func (export "handle_request") (result i64) (local $n i32) (local $mode i32)
    (global.set $set_len (i32.const -1))
    (global.set $rm (i32.const 0))
    (global.set $body_mode (i32.const 0))
    (if (i32.ge_s (call $value (i32.const 0) (i32.const 10)) (i32.const 0))
      (then (drop (call $enable_features (i32.const 2)))))
    ;; request body
    (local.set $n (call $value (i32.const 16) (i32.const 12)))
    (if (i32.gt_s (local.get $n) (i32.const 0)) (then
      (local.set $mode (i32.load8_u (i32.const 1024)))
      (local.set $n (call $number (i32.const 1025) (i32.sub (local.get $n) (i32.const 1))))
      (if (i32.eq (local.get $mode) (i32.const 65))
        (then (call $read_and_keep (i32.const 0))))
      (call $write_pattern (i32.const 0) (local.get $n) (i32.const 1))))
    ;; request headers
    (local.set $n (call $value (i32.const 32) (i32.const 11)))
    (if (i32.ge_s (local.get $n) (i32.const 0))
      (then (call $set_header_value (i32.const 0) (i32.const 128) (i32.const 11) (i32.const 1024) (local.get $n))))
    (if (i32.ge_s (call $value (i32.const 48) (i32.const 10)) (i32.const 0))
      (then (call $remove_header (i32.const 0) (i32.const 144) (i32.const 8))))
    ;; response header
    (local.set $n (call $value (i32.const 64) (i32.const 11)))
    (if (i32.gt_s (local.get $n) (i32.const 0)) (then
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 66))
        (then (call $set_header_value (i32.const 1) (i32.const 160) (i32.const 11) (i32.const 1025) (local.get $n)))
        (else
          (memory.copy (i32.const 2048) (i32.const 1025) (local.get $n))
          (global.set $set_len (local.get $n))))))
    (if (i32.ge_s (call $value (i32.const 80) (i32.const 10)) (i32.const 0))
      (then (global.set $rm (i32.const 1))))
    ;; response body
    (local.set $n (call $value (i32.const 96) (i32.const 12)))
    (if (i32.gt_s (local.get $n) (i32.const 0)) (then
      (local.set $mode (i32.load8_u (i32.const 1024)))
      (local.set $n (call $number (i32.const 1025) (i32.sub (local.get $n) (i32.const 1))))
      (if (i32.eq (local.get $mode) (i32.const 66))
        (then (call $write_pattern (i32.const 1) (local.get $n) (i32.const 2)))
        (else
          (global.set $body_mode (select (i32.const 1) (i32.const 2) (i32.eq (local.get $mode) (i32.const 82))))
          (global.set $body_n (local.get $n))))))
    ;; answer without next
    (local.set $n (call $value (i32.const 112) (i32.const 11)))
    (if (i32.gt_s (local.get $n) (i32.const 0)) (then
      (call $set_status_code (call $number (i32.const 1024) (local.get $n)))
      (return (i64.const 0))))
    (i64.const 1))

  (func (export "handle_response") (param $ctx i32) (param $is_error i32)
    (if (local.get $is_error) (then (return)))
    (if (i32.ge_s (global.get $set_len) (i32.const 0))
      (then (call $set_header_value (i32.const 1) (i32.const 160) (i32.const 11) (i32.const 2048) (global.get $set_len))))
    (if (global.get $rm)
      (then (call $remove_header (i32.const 1) (i32.const 176) (i32.const 11))))
    (if (i32.eq (global.get $body_mode) (i32.const 2))
      (then (call $read_and_keep (i32.const 1))))
    (if (global.get $body_mode)
      (then (call $write_pattern (i32.const 1) (global.get $body_n) (i32.const 3)))))"#,
    )
}

/// Calls next after setting response header `x-version: VERSION` (before
/// next, so no `buffer_response` needed); traps when the request has
/// `x-trap`; answers 403 without next when it has `x-deny`.
pub fn versioned(version: &str) -> Vec<u8> {
    assert!(!version.is_empty() && version.len() <= 32 && !version.contains('"'));
    module(&format!(
        r#"(data (i32.const 0) "x-version")
  (data (i32.const 16) "x-trap")
  (data (i32.const 32) "x-deny")
  (data (i32.const 64) "{version}")
  (func (export "handle_request") (result i64)
    (if (i32.ge_s (call $value (i32.const 16) (i32.const 6)) (i32.const 0))
      (then unreachable))
    (if (i32.ge_s (call $value (i32.const 32) (i32.const 6)) (i32.const 0))
      (then (call $set_status_code (i32.const 403)) (return (i64.const 0))))
    (call $set_header_value (i32.const 1) (i32.const 0) (i32.const 9) (i32.const 64) (i32.const {len}))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32))"#,
        len = version.len()
    ))
}

/// Counts the requests its instance served in a global and sets response
/// header `x-count` to it (decimal) before calling next: shows how
/// instances are shared.
pub fn counter() -> Vec<u8> {
    module(
        r#"(data (i32.const 0) "x-count")
  (global $count (mut i32) (i32.const 0))
  (func (export "handle_request") (result i64)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (call $set_decimal (i32.const 1) (i32.const 0) (i32.const 7) (global.get $count))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32))"#,
    )
}

/// Enables `buffer_request` while starting (so the host collects each
/// request body, up to its limit, before the guest runs) and calls next.
pub fn buffering() -> Vec<u8> {
    module(
        r#"(func (export "_start") (drop (call $enable_features (i32.const 1))))
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32))"#,
    )
}
