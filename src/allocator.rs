//! The binary's memory allocator: mimalloc, called the way its bins are
//! made for, and set to commit its arenas on demand. The library has no
//! `unsafe`; this module of the binary holds all of it.
//!
//! # Why not `mimalloc::MiMalloc` as it is
//! That crate sends every allocation through `mi_malloc_aligned`, with the
//! alignment Rust passes (8 for most types). mimalloc v3 takes its fast
//! path there only while the page for the size has a free block at hand;
//! otherwise it over-allocates `size + alignment - 1` and aligns inside,
//! unless the size is a power of two. So most requests of a size such as
//! 40 or 200 bytes cost a slow path and land in a larger bin (40 in the
//! 48-byte one), on every refill of a page. The same issue is known
//! upstream (purpleprotocol/mimalloc_rust#170, reussir-lang/reussir#339).
//!
//! Here a request whose alignment mimalloc's bins already give goes to
//! plain `mi_malloc`: every block is aligned to 8 bytes, and to 16 when its
//! bin's size is a multiple of 16, which every bin is that a multiple of 16
//! rounds up to (the first block of a page is 16-aligned). Others (an
//! alignment above 16, or a size that is not a multiple of the alignment)
//! keep the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The largest alignment mimalloc gives every block of a size that is a
/// multiple of it (`MI_MAX_ALIGN_SIZE`).
const NATURAL_ALIGN: usize = 16;

/// mimalloc, with the natural bins for the alignments they satisfy.
pub struct Allocator;

/// Whether plain `mi_malloc` of `size` bytes is aligned to `align`.
fn natural(size: usize, align: usize) -> bool {
    align <= NATURAL_ALIGN && size % align == 0
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free`
// frees blocks from both kinds of call), aligned as the layout asks: by the
// bins for natural layouts (see the module's documentation, and the test
// below), by mimalloc's aligned calls otherwise.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation calls take any size and alignment.
        unsafe {
            if natural(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if natural(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; the new block keeps the
        // layout's alignment, by its bin or by the aligned call.
        unsafe {
            if natural(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// `mi_option_arena_eager_commit`: its place in mimalloc v3's `mi_option_t`
/// (`libmimalloc-sys` exports no constant for it).
#[cfg(target_os = "linux")]
const ARENA_EAGER_COMMIT: mi::mi_option_t = 4;

/// Arenas committed on demand, not eagerly. By default on Linux mimalloc
/// commits a whole arena when it reserves it, and memory freed inside it
/// (a store vector's old buffer after it doubled, say) then stays in the
/// resident set: with 1M sessions of `{"user":"alice"}` (`bench/footprint.sh`)
/// the process held 155-162 MB; committed on demand, 135-138 MB, and 7 MB
/// instead of 13 MB before any session. Request-path allocations reuse
/// committed pages either way (`bench/run.sh` shows no difference in CPU).
///
/// mimalloc reserves its first arena at the first allocation, and the
/// Rust runtime allocates before `main`: so this runs as the process loads,
/// from `.init_array` (as C constructors do), before the runtime starts.
/// It overrides `MIMALLOC_ARENA_EAGER_COMMIT`. Linux only: mimalloc's
/// default commits eagerly where the system overcommits memory, as Linux
/// does.
#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    // SAFETY: `mi_option_set` stores one option's value; the process has
    // no other thread yet to read it concurrently.
    unsafe { mi::mi_option_set(ARENA_EAGER_COMMIT, 0) }
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

#[cfg(test)]
mod tests {
    use super::*;

    /// The constructor ran, and set the option it means: the option's
    /// place in `mi_option_t` is mimalloc v3's, so another major version
    /// fails here until it is checked again.
    #[cfg(target_os = "linux")]
    #[test]
    fn mimalloc_commits_arenas_on_demand() {
        // SAFETY: both only read a value.
        let (version, eager) = unsafe { (mi::mi_version(), mi::mi_option_get(ARENA_EAGER_COMMIT)) };
        assert_eq!(
            version / 10_000,
            3,
            "mimalloc {version}: check ARENA_EAGER_COMMIT's place"
        );
        assert_eq!(eager, 0, "arena_eager_commit is still {eager}");
    }

    /// Every natural layout up to 64 KiB comes back aligned, fresh, zeroed
    /// and grown, 32 blocks of each at once (so from the blocks further
    /// into a page too, not only its first). A bin whose size is not a
    /// multiple of 16 would give a 16-aligned layout an 8-aligned block.
    #[test]
    fn natural_layouts_come_back_aligned() {
        for align in [1, 2, 4, 8, 16] {
            let sizes = (align..=65_536).step_by(align);
            for size in sizes.filter(|s| *s <= 4096 || s % 4096 == 0) {
                assert!(natural(size, align));
                let layout = Layout::from_size_align(size, align).unwrap();
                let grown_layout = Layout::from_size_align(size * 2, align).unwrap();
                let mut held = Vec::new();
                for _ in 0..32 {
                    // SAFETY: layouts of non-zero size; every block is
                    // freed below with the layout it was last given.
                    unsafe {
                        let block = Allocator.alloc(layout);
                        let zeroed = Allocator.alloc_zeroed(layout);
                        assert!(!block.is_null() && !zeroed.is_null());
                        assert_eq!(block as usize % align, 0, "{size} bytes, align {align}");
                        assert_eq!(zeroed as usize % align, 0, "{size} zeroed, align {align}");
                        let bytes = std::slice::from_raw_parts(zeroed, size);
                        assert!(bytes.iter().all(|b| *b == 0), "{size} zeroed");
                        let grown = Allocator.realloc(block, layout, size * 2);
                        assert_eq!(grown as usize % align, 0, "{size} grown, align {align}");
                        held.push((grown, grown_layout));
                        held.push((zeroed, layout));
                    }
                }
                for (block, layout) in held {
                    // SAFETY: each came from `Allocator` with this layout.
                    unsafe { Allocator.dealloc(block, layout) }
                }
            }
        }
    }

    /// Alignments the bins do not give go through the aligned calls.
    #[test]
    fn other_layouts_come_back_aligned() {
        for (size, align) in [
            (24, 16),
            (8, 16),
            (64, 32),
            (128, 64),
            (100, 128),
            (4096, 4096),
        ] {
            assert!(!natural(size, align));
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a layout of non-zero size, freed with it.
            unsafe {
                let block = Allocator.alloc(layout);
                assert_eq!(block as usize % align, 0, "{size} bytes, align {align}");
                let grown = Allocator.realloc(block, layout, size * 3);
                assert_eq!(grown as usize % align, 0, "{size} grown, align {align}");
                Allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
            }
        }
    }
}
