//! A `Vec` of entries indexed by a small integer, with a free list so that a
//! removed entry's slot (and so its index) is reused: the table of live
//! connections of the event loops and of the io_uring workers, where the
//! index is the connection's epoll token or its requests' `user_data`.
//! What the `slab` crate does, in a screenful; not worth a dependency.

/// Entries by index; removed slots are reused.
#[derive(Debug)]
pub struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Slab<T> {
        Slab { entries: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    pub fn new() -> Slab<T> {
        Slab::default()
    }

    /// Stores `value`; returns its index (a token, a `user_data`).
    pub fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.entries[index] = Some(value);
                index
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.entries.get_mut(index).and_then(Option::as_mut)
    }

    /// Takes the value out; its index becomes free for the next insert.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let value = self.entries.get_mut(index).and_then(Option::take);
        if value.is_some() {
            self.free.push(index);
        }
        value
    }

    /// The indices of the live entries, in order.
    pub fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries.iter().enumerate().filter_map(|(index, entry)| entry.as_ref().map(|_| index))
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// No live entry?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slab_reuses_freed_slots() {
        let mut slab = Slab::new();
        let a = slab.insert('a');
        let b = slab.insert('b');
        assert_eq!((a, b, slab.len()), (0, 1, 2));
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.remove(a), None, "removed twice");
        assert_eq!(slab.get_mut(a), None);
        assert_eq!(slab.insert('c'), a, "the freed slot is reused");
        assert_eq!(slab.get_mut(b), Some(&mut 'b'));
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.get_mut(99), None);
        assert!(!slab.is_empty());
        assert_eq!(slab.keys().collect::<Vec<_>>(), [a, b]);
    }
}
