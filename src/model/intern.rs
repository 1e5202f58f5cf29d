//! Process-wide string interner: label keys and values, node names, namespaces
//! and resource names become `Sym` (a u32), so the hot loop compares integers.
//!
//! Two ways in, because a scheduler sees two kinds of text:
//!
//! - **Pinned** ([`Sym::new`]): kept for the life of the process. For bounded
//!   vocabularies: label keys, namespaces, resource names, taints, topology
//!   keys, configuration, constants.
//! - **Counted** ([`Interned::sym`]): held by the object it was interned for
//!   (a pod's label values and selector values, its Spark application, node
//!   names). In a Spark cluster these are new for every application or pod
//!   (`spark-app-selector`, `spark-exec-id`, Karpenter's node names), so the
//!   string is freed, and its id reused, when the last object holding it goes.
//!
//! A symbol copied out of an object is valid while that object (a clone of
//! it, an `Arc` of it) lives: the snapshot's and queue's indices are cleaned
//! when the pod leaves them. [`Sym::as_str`] returns `&'static str`, so it pins
//! the string it is called on; code reading per-object text should compare
//! symbols, or use `Display` (which does not pin).

use foldhash::HashMap;
use smallvec::SmallVec;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(u32);

struct Slot {
    /// `None`: the slot is free.
    text: Option<Arc<str>>,
    /// Set once the string is pinned: it is then never freed.
    pinned: OnceLock<&'static str>,
    /// References held by `Interned` guards.
    refs: AtomicU32,
}

impl Slot {
    fn new(text: Arc<str>) -> Slot {
        Slot {
            text: Some(text),
            pinned: OnceLock::new(),
            refs: AtomicU32::new(0),
        }
    }

    fn free() -> Slot {
        Slot {
            text: None,
            pinned: OnceLock::new(),
            refs: AtomicU32::new(0),
        }
    }

    /// Pins the string and returns it for good ("" for a free slot).
    fn pin(&self) -> &'static str {
        match &self.text {
            // The leaked `Arc` keeps the text alive: its count never drops to zero.
            Some(text) => self
                .pinned
                .get_or_init(|| &**Box::leak(Box::new(text.clone()))),
            None => "",
        }
    }

    fn collectable(&self) -> bool {
        self.text.is_some() && self.pinned.get().is_none() && self.refs.load(Ordering::Acquire) == 0
    }
}

#[derive(Default)]
struct Table {
    ids: HashMap<Arc<str>, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Table {
    fn find(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn insert(&mut self, s: &str) -> u32 {
        let text: Arc<str> = Arc::from(s);
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Slot::new(text.clone());
                id
            }
            None => {
                self.slots.push(Slot::new(text.clone()));
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(text, id);
        id
    }

    fn find_or_insert(&mut self, s: &str) -> u32 {
        match self.find(s) {
            Some(id) => id,
            None => self.insert(s),
        }
    }

    /// Frees `id` if nothing holds or pinned it (checked under the write lock:
    /// a reference may have been taken since its count reached zero).
    fn collect(&mut self, id: u32) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return;
        };
        if !slot.collectable() {
            return;
        }
        if let Some(text) = slot.text.take() {
            self.ids.remove(&*text);
        }
        *slot = Slot::free();
        self.free.push(id);
    }
}

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(RwLock::default);

fn read() -> RwLockReadGuard<'static, Table> {
    TABLE.read().unwrap_or_else(|e| e.into_inner())
}

fn write() -> RwLockWriteGuard<'static, Table> {
    TABLE.write().unwrap_or_else(|e| e.into_inner())
}

impl Sym {
    /// Interns `s` for good, returning the same `Sym` for equal strings.
    pub fn new(s: &str) -> Sym {
        {
            let t = read();
            if let Some(id) = t.find(s) {
                t.slots[id as usize].pin();
                return Sym(id);
            }
        }
        let mut t = write();
        let id = t.find_or_insert(s);
        t.slots[id as usize].pin();
        Sym(id)
    }

    /// Looks `s` up without interning it: `None` means no object carries it.
    pub fn lookup(s: &str) -> Option<Sym> {
        read().find(s).map(Sym)
    }

    /// The string, kept for good from now on (see the module comment).
    pub fn as_str(self) -> &'static str {
        read().slots.get(self.0 as usize).map_or("", Slot::pin)
    }

    pub fn id(self) -> u32 {
        self.0
    }

    /// The string, without pinning it.
    fn text(self) -> Option<Arc<str>> {
        read()
            .slots
            .get(self.0 as usize)
            .and_then(|s| s.text.clone())
    }

    /// Strings interned now (pinned or counted), for memory checks.
    pub fn interned_count() -> usize {
        read().ids.len()
    }
}

impl fmt::Debug for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text().as_deref().unwrap_or(""))
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_deref().unwrap_or(""))
    }
}

impl serde::Serialize for Sym {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text().as_deref().unwrap_or(""))
    }
}

impl<'de> serde::Deserialize<'de> for Sym {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Sym::new(&s))
    }
}

/// The counted symbols one object holds: each is kept interned while a guard
/// holding it lives. `Clone` takes new references, `Drop` gives them back.
/// Guards compare equal whatever they hold, so objects compare by content.
#[derive(Default)]
pub struct Interned(SmallVec<[Sym; 8]>);

impl Interned {
    /// Interns `s` for as long as this guard (or a clone of it) lives.
    pub fn sym(&mut self, s: &str) -> Sym {
        let counted = |t: &Table, id: u32| {
            t.slots[id as usize].refs.fetch_add(1, Ordering::Relaxed);
            Sym(id)
        };
        let sym = {
            let t = read();
            t.find(s).map(|id| counted(&t, id))
        };
        let sym = sym.unwrap_or_else(|| {
            let mut t = write();
            let id = t.find_or_insert(s);
            counted(&t, id)
        });
        self.0.push(sym);
        sym
    }

    /// Takes one more reference to `sym`, which something alive holds (an
    /// object's guard, or it is pinned), so that it stays interned as long as
    /// this guard too: for indices that keep a symbol longer than the object
    /// they took it from.
    pub fn hold(&mut self, sym: Sym) {
        let t = read();
        if let Some(slot) = t.slots.get(sym.0 as usize).filter(|s| s.text.is_some()) {
            slot.refs.fetch_add(1, Ordering::Relaxed);
            self.0.push(sym);
        }
    }

    /// How many references the guard holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Clone for Interned {
    fn clone(&self) -> Self {
        if !self.0.is_empty() {
            // `self` holds a reference to each, so none can be freed meanwhile.
            let t = read();
            for s in &self.0 {
                if let Some(slot) = t.slots.get(s.0 as usize) {
                    slot.refs.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Interned(self.0.clone())
    }
}

impl Drop for Interned {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let mut last: SmallVec<[u32; 8]> = SmallVec::new();
        {
            let t = read();
            for s in &self.0 {
                if let Some(slot) = t.slots.get(s.0 as usize) {
                    if slot.refs.fetch_sub(1, Ordering::AcqRel) == 1 && slot.pinned.get().is_none()
                    {
                        last.push(s.0);
                    }
                }
            }
        }
        if !last.is_empty() {
            let mut t = write();
            for id in last {
                t.collect(id);
            }
        }
    }
}

impl PartialEq for Interned {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Interned {}

impl fmt::Debug for Interned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interned({})", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_string_same_sym() {
        let a = Sym::new("topology.kubernetes.io/zone");
        let b = Sym::new("topology.kubernetes.io/zone");
        assert_eq!(a, b);
        assert_ne!(a, Sym::new("kubernetes.io/hostname"));
        assert_eq!(a.as_str(), "topology.kubernetes.io/zone");
        assert_eq!(Sym::lookup("topology.kubernetes.io/zone"), Some(a));
        assert_eq!(Sym::lookup("never-interned-xyzzy"), None);
    }

    #[test]
    fn a_counted_string_lives_while_a_guard_holds_it() {
        let text = "intern-test-counted-1";
        let mut g = Interned::default();
        let s = g.sym(text);
        assert_eq!(Sym::lookup(text), Some(s));
        assert_eq!(s.to_string(), text);
        let mut h = Interned::default();
        assert_eq!(h.sym(text), s, "the same string, the same symbol");
        let cloned = g.clone();
        let mut held = Interned::default();
        held.hold(s);
        drop(g);
        drop(h);
        assert_eq!(Sym::lookup(text), Some(s), "the clone still holds it");
        drop(cloned);
        assert_eq!(Sym::lookup(text), Some(s), "held for an index");
        drop(held);
        assert_eq!(Sym::lookup(text), None, "freed with the last guard");
        // Its id is free for another string; the freed symbol reads empty
        // until then, never as another live string.
        assert!(s.to_string().is_empty() || s.to_string() != text);
    }

    #[test]
    fn pinning_keeps_a_counted_string() {
        let text = "intern-test-pinned-by-as-str";
        let mut g = Interned::default();
        let s = g.sym(text);
        assert_eq!(s.as_str(), text);
        drop(g);
        assert_eq!(Sym::lookup(text), Some(s), "as_str pinned it");
        let text = "intern-test-pinned-by-new";
        let mut g = Interned::default();
        let s = g.sym(text);
        assert_eq!(Sym::new(text), s);
        drop(g);
        assert_eq!(Sym::lookup(text), Some(s));
    }

    /// One step of `guards_hold_exactly_what_they_interned`.
    #[derive(Debug, Clone)]
    enum Op {
        /// Guard `g` interns string `s` of the pool.
        Intern { g: usize, s: usize },
        /// Guard `g` is replaced by a clone of guard `from`.
        Clone { g: usize, from: usize },
        /// Guard `g` is dropped (replaced by an empty one).
        Drop { g: usize },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..6usize, 0..12usize).prop_map(|(g, s)| Op::Intern { g, s }),
            1 => (0..6usize, 0..6usize).prop_map(|(g, from)| Op::Clone { g, from }),
            2 => (0..6usize).prop_map(|g| Op::Drop { g }),
        ]
    }

    proptest::proptest! {
        /// Whatever guards intern, clone and drop, a string is interned exactly
        /// while some guard holds it, and every symbol a guard holds reads as
        /// the string it was interned from (ids of freed strings are reused).
        #[test]
        fn guards_hold_exactly_what_they_interned(
            case in 0u32..u32::MAX,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let pool: Vec<String> = (0..12).map(|i| format!("intern-prop-{case}-{i}")).collect();
            let mut guards: Vec<(Interned, Vec<usize>)> =
                (0..6).map(|_| (Interned::default(), Vec::new())).collect();
            for op in ops {
                match op {
                    Op::Intern { g, s } => {
                        let sym = guards[g].0.sym(&pool[s]);
                        proptest::prop_assert_eq!(sym.to_string(), pool[s].clone());
                        guards[g].1.push(s);
                    }
                    Op::Clone { g, from } => guards[g] = (guards[from].0.clone(), guards[from].1.clone()),
                    Op::Drop { g } => guards[g] = (Interned::default(), Vec::new()),
                }
                for (i, text) in pool.iter().enumerate() {
                    let held = guards.iter().any(|(_, strings)| strings.contains(&i));
                    proptest::prop_assert_eq!(Sym::lookup(text).is_some(), held, "{}", text);
                }
                for (guard, strings) in &guards {
                    for (sym, &i) in guard.0.iter().zip(strings) {
                        proptest::prop_assert_eq!(sym.to_string(), pool[i].clone());
                        proptest::prop_assert_eq!(Sym::lookup(&pool[i]), Some(*sym));
                    }
                }
            }
            drop(guards);
            for text in &pool {
                proptest::prop_assert_eq!(Sym::lookup(text), None);
            }
        }
    }

    #[test]
    fn guards_compare_equal() {
        let mut a = Interned::default();
        a.sym("intern-test-eq");
        assert_eq!(a, Interned::default());
        assert_eq!(a.len(), 1);
    }
}

/// Hashing for `Sym` keys, which are small dense integers already: SipHash's
/// flood protection buys nothing in the maps the hot paths key by symbol.
#[derive(Debug, Default, Clone, Copy)]
pub struct SymHasher(u64);

impl std::hash::Hasher for SymHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads consecutive ids over the high bits hashbrown uses.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The `BuildHasher` for maps keyed by symbols.
pub type SymHash = std::hash::BuildHasherDefault<SymHasher>;
