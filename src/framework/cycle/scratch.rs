//! Buffers a cycle borrows from its profile, so that their memory outlives the
//! cycle: the score columns of 5,000 nodes are ~150 KB, and zeroing them alone
//! took ~4% of a decision (`perf record -e cpu-clock`), besides a large allocation and free per cycle.

use std::sync::Mutex;

/// One kept buffer. Concurrent cycles of one profile do not wait for it: the
/// one that finds it taken allocates its own.
#[derive(Default)]
pub(crate) struct Scratch<T> {
    kept: Mutex<Vec<T>>,
}

impl<T: Copy> Scratch<T> {
    /// The kept buffer (or a new one), given back when the borrow ends.
    pub(crate) fn borrow(&self) -> Borrowed<'_, T> {
        let buf = self
            .kept
            .try_lock()
            .map(|mut kept| std::mem::take(&mut *kept))
            .unwrap_or_default();
        Borrowed { home: self, buf }
    }
}

/// A buffer on loan from a [`Scratch`].
pub(crate) struct Borrowed<'a, T> {
    home: &'a Scratch<T>,
    buf: Vec<T>,
}

impl<T: Copy> Borrowed<'_, T> {
    /// The first `len` entries, holding whatever an earlier cycle left there
    /// (`fill` where the buffer grew): the caller writes every entry before
    /// reading it.
    pub(crate) fn first(&mut self, len: usize, fill: T) -> &mut [T] {
        if self.buf.len() < len {
            self.buf.resize(len, fill);
        }
        &mut self.buf[..len]
    }
}

impl<T> Drop for Borrowed<'_, T> {
    fn drop(&mut self) {
        if let Ok(mut kept) = self.home.kept.try_lock() {
            if kept.capacity() < self.buf.capacity() {
                *kept = std::mem::take(&mut self.buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_kept_between_borrows_and_not_shared_by_two() {
        let s = Scratch::<i64>::default();
        {
            let mut b = s.borrow();
            b.first(40, 0)[..4].copy_from_slice(&[1, 2, 3, 4]);
            // A second borrow meanwhile gets a buffer of its own.
            let mut c = s.borrow();
            assert_eq!(c.first(2, 9), &[9, 9]);
        }
        // The larger of the two came back, with what was left in it.
        let mut b = s.borrow();
        assert_eq!(b.first(3, 0), &[1, 2, 3]);
        assert_eq!(b.first(6, 7), &[1, 2, 3, 4, 0, 0]);
        assert_eq!(b.first(42, 7)[39..], [0, 7, 7]);
    }
}
