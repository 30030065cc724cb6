//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `f` where the product's own `catch_unwind` is part of the behaviour
/// under test (the broker turns a kafka-protocol decoder panic into a closed
/// connection). libfuzzer-sys's panic hook aborts at any panic, caught or not;
/// this one only remembers the message, and a panic that escapes `f` (one the
/// product did not catch) still aborts: a crash, with its message printed.
/// `RUNNEL_FUZZ_STRICT=1` makes caught panics crashes too.
pub fn run_with_caught_panics(f: impl FnOnce()) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let strict = std::env::var_os("RUNNEL_FUZZ_STRICT").is_some_and(|v| v == "1");
        panic::set_hook(Box::new(move |info| {
            if strict {
                eprintln!("{info}");
                std::process::abort();
            }
            LAST_PANIC.with(|last| *last.borrow_mut() = info.to_string());
        }));
    });
    if panic::catch_unwind(AssertUnwindSafe(f)).is_err() {
        LAST_PANIC.with(|last| eprintln!("uncaught panic: {}", last.borrow()));
        std::process::abort();
    }
}
