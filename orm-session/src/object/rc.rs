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
//! [`Arc32::new_with_weak`] creates an object together with the identity map's weak reference
//! in one step, without an atomic operation, for the load path.

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// Counts above this abort (see the module documentation).
const MAX_COUNT: u32 = i32::MAX as u32;

struct Inner<T> {
    /// Strong handles.
    strong: AtomicU32,
    /// Weak handles, plus one for all the strong handles together.
    weak: AtomicU32,
    /// Dropped in place when `strong` reaches zero; the allocation goes with `weak`.
    data: ManuallyDrop<T>,
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

/// Increments a count, aborting before it can overflow.
#[inline]
fn increment(count: &AtomicU32) {
    if count.fetch_add(1, Ordering::Relaxed) > MAX_COUNT {
        std::process::abort();
    }
}

impl<T> Arc32<T> {
    pub(crate) fn new(data: T) -> Self {
        Arc32::from_inner(Arc32::allocate(data, 1))
    }

    /// A new allocation and a weak handle on it, without any atomic operation.
    pub(crate) fn new_with_weak(data: T) -> (Self, Weak32<T>) {
        let ptr = Arc32::allocate(data, 2);
        (Arc32::from_inner(ptr), Weak32 { ptr })
    }

    fn allocate(data: T, weak: u32) -> NonNull<Inner<T>> {
        NonNull::from(Box::leak(Box::new(Inner {
            strong: AtomicU32::new(1),
            weak: AtomicU32::new(weak),
            data: ManuallyDrop::new(data),
        })))
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
        increment(this.weak());
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
            this.weak().load(Ordering::SeqCst),
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
            increment(weak);
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
        if weak.fetch_sub(1, Ordering::Release) == 1 {
            fence(Ordering::Acquire);
            // SAFETY: no handle of any kind is left; the value was dropped already (the
            // strong handles' weak count went last), and `ManuallyDrop` keeps it from being
            // dropped twice.
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
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
    fn new_with_weak_counts_the_weak_handle() {
        let (p, drops) = probe();
        let (a, w) = Arc32::new_with_weak(p);
        assert_eq!(Arc32::counts(&a), (1, 2));
        assert!(Arc32::ptr_eq(&w.upgrade().unwrap(), &a));
        drop(a);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(w.upgrade().is_none());
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
    fn handles_shared_between_threads_drop_the_value_once() {
        // Miri (`cargo +nightly miri test -p orm-session --lib object::rc`) explores
        // interleavings itself; a few rounds suffice there.
        let (rounds, ops) = if cfg!(miri) { (3, 20) } else { (50, 1000) };
        for _ in 0..rounds {
            let (p, drops) = probe();
            let (a, w) = Arc32::new_with_weak(p);
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
