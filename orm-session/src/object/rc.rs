//! The shared allocation behind every [`Obj`](super::Obj): `std::sync::Arc` and `Weak` with
//! 32-bit counts.
//!
//! `std`'s `Arc` spends 16 bytes on its two counts; an object handle needs both counts (the
//! identity map holds objects weakly) but not their 64-bit range, so [`Arc32`] keeps them in
//! 8 bytes, which is what brings the per-object overhead of a session under 64 bytes. No crate
//! offers weak references with narrow counts (`triomphe` and `servo_arc` drop weak references
//! altogether). The code follows `std`'s `Arc` operation for operation, with the same memory
//! orderings, minus what handles never use (`get_mut`, `make_mut`, cyclic construction and
//! therefore the weak-count lock). A count that would pass `i32::MAX` aborts the process, as
//! `std`'s does past `isize::MAX`: it takes two billion leaked handles to one object.
//!
//! [`Slab::new_with_weak`] creates an object together with the identity map's weak reference
//! in one step, without an atomic operation, for the load path.
//!
//! The objects of a load share allocations: a [`Slab`] hands out the slots of blocks of 16 to
//! 255 objects, so a load of 10,000 rows calls the allocator 43 times rather than 10,000 (a
//! `malloc` of an object took about 180 instructions, a tenth of decoding its row). Each slot
//! keeps its own counts and its value drops with its last strong handle, as for a lone
//! allocation; the block's memory goes when the last handle of its last slot does and the
//! slab has given up the slots it did not use. So one object kept alive keeps its block's
//! memory (not the other objects' values) alive. The slot's index in its block sits in the
//! top byte of the weak count, which leaves the weak count 24 bits (2^23 handles to one
//! object abort).

use std::alloc::Layout;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// Strong counts above this abort (see the module documentation).
const MAX_COUNT: u32 = i32::MAX as u32;

/// The weak count's bits; the slot index takes the bits above.
const WEAK_BITS: u32 = 24;
const WEAK_MASK: u32 = (1 << WEAK_BITS) - 1;
/// Weak counts above this abort, far below the bits' limit.
const MAX_WEAK: u32 = WEAK_MASK >> 1;
/// The slot index of an object allocated on its own, not in a block.
const ALONE: u32 = 0xFF;
/// The most slots in one block.
const BLOCK_SLOTS: usize = ALONE as usize;
/// The first block of a slab; later ones double, up to `BLOCK_SLOTS`.
const FIRST_BLOCK: usize = 16;

struct Inner<T> {
    /// Strong handles.
    strong: AtomicU32,
    /// Weak handles, plus one for all the strong handles together (the low `WEAK_BITS`), and
    /// the slot's index in its block, or `ALONE` (the bits above, never changed).
    weak: AtomicU32,
    /// Dropped in place when `strong` reaches zero; the memory goes with `weak`.
    data: ManuallyDrop<T>,
}

impl<T> Inner<T> {
    fn new(data: T, weak: u32, index: u32) -> Self {
        Inner {
            strong: AtomicU32::new(1),
            weak: AtomicU32::new(weak | index << WEAK_BITS),
            data: ManuallyDrop::new(data),
        }
    }
}

/// The head of a block of slots, which follow it.
struct Block {
    /// Slots not released yet: a slot's object releases it with its last handle, the slab
    /// releases the slots it did not hand out.
    live: AtomicU32,
    /// How many slots the block has.
    len: u32,
}

/// The layout of a block of `len` slots of `T`, and the offset of its first slot.
fn block_layout<T>(len: usize) -> (Layout, usize) {
    let slots = Layout::array::<Inner<T>>(len).expect("a block of at most 255 slots");
    let (layout, offset) = Layout::new::<Block>()
        .extend(slots)
        .expect("a block of at most 255 slots");
    (layout.pad_to_align(), offset)
}

/// Gives up `n` slots of `block`; the last release frees it.
///
/// # Safety
/// `block` is a live block of slots of `T` of which the caller holds `n` unreleased slots.
unsafe fn release<T>(block: NonNull<Block>, n: u32) {
    let block = block.as_ptr();
    // Release/Acquire as for the counts of one object: every use of a slot happens before
    // the release of the last one, which frees the memory.
    if (*block).live.fetch_sub(n, Ordering::Release) == n {
        fence(Ordering::Acquire);
        let (layout, _) = block_layout::<T>((*block).len as usize);
        std::alloc::dealloc(block.cast(), layout);
    }
}

/// Frees the memory of the object at `ptr`, whose last handle of any kind is gone.
///
/// # Safety
/// No handle on `ptr` is left, its value was dropped, and `index` is its slot index.
unsafe fn free<T>(ptr: NonNull<Inner<T>>, index: u32) {
    if index == ALONE {
        // `ManuallyDrop` keeps the value from being dropped twice.
        drop(Box::from_raw(ptr.as_ptr()));
        return;
    }
    let offset = block_layout::<T>(0).1 + index as usize * std::mem::size_of::<Inner<T>>();
    // The slot was made by `Slab::new_with_weak` at this offset from its block.
    let block = ptr.as_ptr().cast::<u8>().sub(offset).cast::<Block>();
    release::<T>(NonNull::new_unchecked(block), 1);
}

/// Hands out the slots of blocks to the objects of loads (see the module documentation).
pub(crate) struct Slab<T> {
    /// The current block, while it has slots left, and its next free slot.
    block: Option<NonNull<Block>>,
    next: u32,
    /// The length of the current (or last) block.
    len: u32,
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: a slab only hands out slots (through `&mut self`); the objects in them are shared
// like `Arc32`'s.
unsafe impl<T: Send + Sync> Send for Slab<T> {}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            block: None,
            next: 0,
            len: 0,
            _owns: PhantomData,
        }
    }
}

impl<T> Slab<T> {
    /// A new object and a weak handle on it, made together without an atomic operation, in
    /// the next slot of the current block. Without one, a new block holds 16 slots, then
    /// twice the last block's, up to 255: a session that loads few objects spends little on
    /// slots, one that loads many calls the allocator once per 255.
    pub(crate) fn new_with_weak(&mut self, data: T) -> (Arc32<T>, Weak32<T>) {
        let block = match self.block {
            Some(block) => block,
            None => {
                let len = (self.len as usize * 2).clamp(FIRST_BLOCK, BLOCK_SLOTS);
                self.start_block(len)
            }
        };
        let index = self.next;
        self.next += 1;
        if self.next == self.len {
            // Every slot is handed out: the block belongs to its objects now.
            self.block = None;
        }
        let offset = block_layout::<T>(0).1 + index as usize * std::mem::size_of::<Inner<T>>();
        // SAFETY: `index` is a slot of `block` never handed out before; the pointer keeps the
        // block's provenance, which `free` uses to find the block again.
        let ptr = unsafe {
            let ptr = block.as_ptr().cast::<u8>().add(offset).cast::<Inner<T>>();
            ptr.write(Inner::new(data, 2, index));
            NonNull::new_unchecked(ptr)
        };
        (Arc32::from_inner(ptr), Weak32 { ptr })
    }

    /// Allocates a block of `len` slots, all held by the slab.
    fn start_block(&mut self, len: usize) -> NonNull<Block> {
        let (layout, _) = block_layout::<T>(len);
        // SAFETY: the layout has a nonzero size (the header).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(block) = NonNull::new(raw.cast::<Block>()) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: freshly allocated for a block.
        unsafe {
            block.as_ptr().write(Block {
                live: AtomicU32::new(len as u32),
                len: len as u32,
            })
        };
        self.block = Some(block);
        self.next = 0;
        self.len = len as u32;
        block
    }
}

impl<T> Drop for Slab<T> {
    fn drop(&mut self) {
        if let Some(block) = self.block.take() {
            // SAFETY: the slots from `next` on were never handed out; the slab holds them.
            unsafe { release::<T>(block, self.len - self.next) };
        }
    }
}

/// A strong, atomically counted handle (`std::sync::Arc` with 32-bit counts).
pub(crate) struct Arc32<T> {
    ptr: NonNull<Inner<T>>,
    /// Owns a `T` for the drop checker.
    _owns: PhantomData<Inner<T>>,
}

/// A weak handle on a [`Arc32`] allocation (`std::sync::Weak` with 32-bit counts).
pub(crate) struct Weak32<T> {
    /// Dangling (never dereferenced) for [`Weak32::new`].
    ptr: NonNull<Inner<T>>,
}

// SAFETY: as for `std::sync::Arc`/`Weak`: the counts are atomic, and `T` is shared between
// threads (Sync) and may be dropped on any of them (Send).
unsafe impl<T: Send + Sync> Send for Arc32<T> {}
unsafe impl<T: Send + Sync> Sync for Arc32<T> {}
unsafe impl<T: Send + Sync> Send for Weak32<T> {}
unsafe impl<T: Send + Sync> Sync for Weak32<T> {}

/// Increments a strong count, aborting before it can overflow.
#[inline]
fn increment(count: &AtomicU32) {
    if count.fetch_add(1, Ordering::Relaxed) > MAX_COUNT {
        std::process::abort();
    }
}

/// Increments a weak count, aborting before it can reach the slot index.
#[inline]
fn increment_weak(count: &AtomicU32) {
    if count.fetch_add(1, Ordering::Relaxed) & WEAK_MASK > MAX_WEAK {
        std::process::abort();
    }
}

impl<T> Arc32<T> {
    pub(crate) fn new(data: T) -> Self {
        let inner = Box::new(Inner::new(data, 1, ALONE));
        Arc32::from_inner(NonNull::from(Box::leak(inner)))
    }

    /// Takes over one strong count of `ptr`.
    fn from_inner(ptr: NonNull<Inner<T>>) -> Self {
        Arc32 {
            ptr,
            _owns: PhantomData,
        }
    }

    fn strong(&self) -> &AtomicU32 {
        // SAFETY: the allocation lives while a strong handle does; only the field is borrowed.
        unsafe { &(*self.ptr.as_ptr()).strong }
    }

    fn weak(&self) -> &AtomicU32 {
        // SAFETY: as for `strong`.
        unsafe { &(*self.ptr.as_ptr()).weak }
    }

    pub(crate) fn downgrade(this: &Self) -> Weak32<T> {
        increment_weak(this.weak());
        Weak32 { ptr: this.ptr }
    }

    pub(crate) fn ptr_eq(this: &Self, other: &Self) -> bool {
        this.ptr == other.ptr
    }

    /// The address of the shared value (the same for every handle on it).
    pub(crate) fn as_ptr(this: &Self) -> *const T {
        // SAFETY: the allocation lives while `this` does; no reference is created.
        unsafe { std::ptr::addr_of!((*this.ptr.as_ptr()).data).cast() }
    }

    #[cfg(test)]
    fn counts(this: &Self) -> (u32, u32) {
        (
            this.strong().load(Ordering::SeqCst),
            this.weak().load(Ordering::SeqCst) & WEAK_MASK,
        )
    }
}

impl<T> Deref for Arc32<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the value lives while a strong handle does, and is only ever shared.
        unsafe { &(*self.ptr.as_ptr()).data }
    }
}

impl<T> Clone for Arc32<T> {
    #[inline]
    fn clone(&self) -> Self {
        // Relaxed, as in `std`: a new handle is made from an existing one, which keeps the
        // allocation alive; no other memory is published by the increment.
        increment(self.strong());
        Arc32::from_inner(self.ptr)
    }
}

impl<T> Drop for Arc32<T> {
    #[inline]
    fn drop(&mut self) {
        // Release so that every use of the value through this handle happens before the
        // value is dropped by whichever handle drops last (which synchronizes by Acquire).
        if self.strong().fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: that was the last strong handle: nobody reads the value any more, and weak
        // handles only touch the counts.
        unsafe { ManuallyDrop::drop(&mut (*self.ptr.as_ptr()).data) };
        // The weak count held on behalf of all strong handles.
        drop(Weak32 { ptr: self.ptr });
    }
}

impl<T> Weak32<T> {
    /// A weak handle on nothing: `upgrade` always gives `None`.
    pub(crate) const fn new() -> Self {
        Weak32 {
            ptr: NonNull::dangling(),
        }
    }

    fn counts(&self) -> Option<(&AtomicU32, &AtomicU32)> {
        if self.ptr == NonNull::dangling() {
            return None;
        }
        // SAFETY: a weak handle keeps the allocation (not the value) alive; only the count
        // fields are borrowed. `Inner` is never a zero-sized type, so a real allocation is
        // never at the dangling address.
        unsafe {
            let inner = self.ptr.as_ptr();
            Some((&(*inner).strong, &(*inner).weak))
        }
    }

    /// A strong handle, unless the value was dropped.
    #[inline]
    pub(crate) fn upgrade(&self) -> Option<Arc32<T>> {
        let (strong, _) = self.counts()?;
        // Never from zero: once zero, the value is being (or has been) dropped. Acquire on
        // success, as in `std`.
        strong
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                if n == 0 {
                    return None;
                }
                if n > MAX_COUNT {
                    std::process::abort();
                }
                Some(n + 1)
            })
            .ok()?;
        Some(Arc32::from_inner(self.ptr))
    }

    /// How many strong handles there are (0 once the value is dropped).
    pub(crate) fn strong_count(&self) -> u32 {
        self.counts()
            .map_or(0, |(strong, _)| strong.load(Ordering::Relaxed))
    }

    pub(crate) fn ptr_eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }
}

impl<T> Default for Weak32<T> {
    fn default() -> Self {
        Weak32::new()
    }
}

impl<T> Clone for Weak32<T> {
    fn clone(&self) -> Self {
        if let Some((_, weak)) = self.counts() {
            increment_weak(weak);
        }
        Weak32 { ptr: self.ptr }
    }
}

impl<T> Drop for Weak32<T> {
    #[inline]
    fn drop(&mut self) {
        let Some((_, weak)) = self.counts() else {
            return;
        };
        // Release/Acquire as for the strong count: the last handle of any kind frees.
        let before = weak.fetch_sub(1, Ordering::Release);
        if before & WEAK_MASK == 1 {
            fence(Ordering::Acquire);
            // SAFETY: no handle of any kind is left; the value was dropped already (the
            // strong handles' weak count went last).
            unsafe { free(self.ptr, before >> WEAK_BITS) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Counts its drops.
    struct Probe(Arc<AtomicUsize>);

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn probe() -> (Probe, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        (Probe(drops.clone()), drops)
    }

    #[test]
    fn the_counts_take_eight_bytes() {
        assert_eq!(std::mem::size_of::<Inner<u64>>(), 16);
        assert_eq!(std::mem::size_of::<Arc32<u64>>(), 8);
        assert_eq!(std::mem::size_of::<Option<Arc32<u64>>>(), 8);
        assert_eq!(std::mem::size_of::<Weak32<u64>>(), 8);
    }

    #[test]
    fn the_value_lives_while_a_strong_handle_does() {
        let (p, drops) = probe();
        let a = Arc32::new(p);
        let b = a.clone();
        let w = Arc32::downgrade(&a);
        assert_eq!(Arc32::counts(&a), (2, 2));
        assert!(Arc32::ptr_eq(&a, &b));
        drop(a);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert_eq!(w.strong_count(), 1);
        let c = w.upgrade().expect("alive");
        drop((b, c));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(w.strong_count(), 0);
        assert!(w.upgrade().is_none());
        let w2 = w.clone();
        drop(w);
        assert!(w2.upgrade().is_none());
    }

    #[test]
    fn a_weak_handle_on_nothing() {
        let w = Weak32::<String>::new();
        assert!(w.upgrade().is_none());
        assert_eq!(w.strong_count(), 0);
        let w2 = w.clone();
        assert!(w.ptr_eq(&w2));
        let a = Arc32::new(String::from("x"));
        assert!(!Arc32::downgrade(&a).ptr_eq(&w));
        assert_eq!(Arc32::as_ptr(&a), &*a as *const String);
    }

    #[test]
    fn a_slab_fills_its_blocks_slot_after_slot() {
        let mut slab = Slab::default();
        let mut filler: Vec<_> = (0..FIRST_BLOCK - 3)
            .map(|i| slab.new_with_weak(i as u64))
            .collect();
        let (a, wa) = slab.new_with_weak(1u64);
        let (b, _wb) = slab.new_with_weak(2u64);
        let (c, _wc) = slab.new_with_weak(3u64);
        // One block: the slots follow each other.
        let step = std::mem::size_of::<Inner<u64>>();
        assert_eq!(
            Arc32::as_ptr(&b) as usize - Arc32::as_ptr(&a) as usize,
            step
        );
        assert_eq!(
            Arc32::as_ptr(&c) as usize - Arc32::as_ptr(&b) as usize,
            step
        );
        assert_eq!((*a, *b, *c), (1, 2, 3));
        assert_eq!(Arc32::counts(&a), (1, 2));
        // The block is full: the next object starts another.
        assert!(slab.block.is_none());
        let (d, _wd) = slab.new_with_weak(4u64);
        assert_eq!((slab.len as usize, slab.next), (2 * FIRST_BLOCK, 1));
        // Weak counts come and go without touching the slot index.
        let extra: Vec<_> = (0..5).map(|_| Arc32::downgrade(&c)).collect();
        assert_eq!(Arc32::counts(&c), (1, 7));
        drop(extra);
        assert_eq!(Arc32::counts(&c), (1, 2));
        drop((b, a));
        assert!(wa.upgrade().is_none());
        filler.clear();
        drop((c, d, slab, filler));
        // Miri reports a leak if a block outlives its slots.
    }

    #[test]
    fn a_slab_gives_up_the_slots_it_did_not_use() {
        let (p, drops) = probe();
        let mut slab = Slab::default();
        let (a, w) = slab.new_with_weak(p);
        assert_eq!(slab.len as usize, FIRST_BLOCK);
        let block = slab.block.expect("a block with slots left");
        // SAFETY: the object keeps the block alive; only its count is read.
        let live = || unsafe { (*block.as_ptr()).live.load(Ordering::SeqCst) };
        assert_eq!(live() as usize, FIRST_BLOCK);
        drop(slab);
        // The 15 unused slots are released; the object's slot keeps the block.
        assert_eq!(live(), 1);
        // The object and its block outlive the slab.
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        let again = w.upgrade().expect("alive");
        drop((a, again));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(w.upgrade().is_none());
        drop(w);
    }

    #[test]
    fn blocks_double_from_16_to_255_slots() {
        let mut slab = Slab::default();
        let mut held = Vec::new();
        let mut lens = Vec::new();
        for i in 0..1000u32 {
            held.push(slab.new_with_weak(i).0);
            if slab.next == 1 {
                lens.push(slab.len);
            }
        }
        assert_eq!(lens, [16, 32, 64, 128, 255, 255, 255]);
        drop((held, slab));
    }

    #[test]
    fn objects_of_one_block_drop_on_many_threads() {
        let (rounds, per) = if cfg!(miri) { (2, 8) } else { (20, 200) };
        for _ in 0..rounds {
            let (p, drops) = probe();
            let drops_of = drops.clone();
            let mut slab = Slab::default();
            let objects: Vec<_> = (0..per)
                .map(|_| slab.new_with_weak(Probe(drops_of.clone())))
                .collect();
            drop(p);
            let threads: Vec<_> = objects
                .chunks(per / 4)
                .map(|chunk| {
                    let chunk: Vec<_> = chunk.iter().map(|(a, w)| (a.clone(), w.clone())).collect();
                    std::thread::spawn(move || {
                        for (a, w) in chunk {
                            drop(a);
                            assert!(w.upgrade().is_some() || w.strong_count() == 0);
                        }
                    })
                })
                .collect();
            drop(objects);
            drop(slab);
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(drops.load(Ordering::SeqCst), per + 1);
        }
    }

    #[test]
    fn handles_shared_between_threads_drop_the_value_once() {
        // Miri (`cargo +nightly miri test -p orm-session --lib object::rc`) explores
        // interleavings itself; a few rounds suffice there.
        let (rounds, ops) = if cfg!(miri) { (3, 20) } else { (50, 1000) };
        for _ in 0..rounds {
            let (p, drops) = probe();
            let a = Arc32::new(p);
            let w = Arc32::downgrade(&a);
            let threads: Vec<_> = (0..4)
                .map(|i| {
                    let a = a.clone();
                    let w = w.clone();
                    std::thread::spawn(move || {
                        for _ in 0..ops {
                            if i % 2 == 0 {
                                drop(a.clone());
                            } else if let Some(s) = w.upgrade() {
                                drop(Arc32::downgrade(&s));
                            }
                        }
                        drop(a);
                        // Upgrades racing with the last strong drop must never revive it.
                        for _ in 0..ops {
                            if let Some(s) = w.upgrade() {
                                assert!(s.0.load(Ordering::SeqCst) == 0);
                            }
                        }
                    })
                })
                .collect();
            drop(a);
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            assert!(w.upgrade().is_none());
        }
    }
}
