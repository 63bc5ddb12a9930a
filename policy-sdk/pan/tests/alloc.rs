//! The hot path does not allocate: cells without a PAN (fewer than 13 digits, or digits that
//! are no PAN) cost `mask_pans` and `scrub` no allocation. Its own test binary, because it
//! counts every allocation of the process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A counting wrapper around the system allocator needs `unsafe impl GlobalAlloc`; it is sound
// because every call is forwarded unchanged to `System`, which upholds the contract.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn cells_without_a_pan_do_not_allocate() {
    for cell in [
        "",
        "alice@example.com",
        "order 1234 at 10:30",
        "2026-12-05 09:31:06.123456+00",
        "4111111111111112",
        "GB82 WEST 1234 5698 7654 32",
        "こんにちは、世界。これは長い日本語の文章です。",
        "٠١٢٣٤٥٦٧٨٩ ٠١٢",
        "\x1b[01;31m\x1b[Kmatch\x1b[m\x1b[K",
    ] {
        assert_eq!(
            allocations(|| {
                std::hint::black_box(warden_pan::mask_pans(std::hint::black_box(cell)));
                std::hint::black_box(warden_pan::scrub(std::hint::black_box(cell)));
                std::hint::black_box(warden_pan::find_pans(std::hint::black_box(cell)));
            }),
            0,
            "{cell:?}"
        );
    }
}
