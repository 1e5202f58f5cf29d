//! Process-wide string interner: label keys and values, node names, namespaces
//! and resource names become `Sym` (a u32), so the hot loop compares integers.
//!
//! Interned strings are leaked on purpose: the set of label keys/values in a
//! cluster is bounded in practice, and `&'static str` resolution keeps lookups free.

use dashmap::DashMap;
use std::fmt;
use std::sync::{OnceLock, RwLock};

#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(u32);

struct Interner {
    ids: DashMap<&'static str, Sym>,
    strings: RwLock<Vec<&'static str>>,
}

fn interner() -> &'static Interner {
    static INTERNER: OnceLock<Interner> = OnceLock::new();
    INTERNER.get_or_init(|| Interner {
        ids: DashMap::new(),
        strings: RwLock::new(Vec::new()),
    })
}

impl Sym {
    /// Interns `s`, returning the same `Sym` for equal strings.
    pub fn new(s: &str) -> Sym {
        let i = interner();
        if let Some(sym) = i.ids.get(s) {
            return *sym;
        }
        // Take the write lock before inserting so ids stay dense and unique.
        let mut strings = i.strings.write().unwrap_or_else(|e| e.into_inner());
        if let Some(sym) = i.ids.get(s) {
            return *sym;
        }
        let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
        let sym = Sym(strings.len() as u32);
        strings.push(leaked);
        i.ids.insert(leaked, sym);
        sym
    }

    /// Looks `s` up without interning it: `None` means no object carries it.
    pub fn lookup(s: &str) -> Option<Sym> {
        interner().ids.get(s).map(|s| *s)
    }

    pub fn as_str(self) -> &'static str {
        let strings = interner().strings.read().unwrap_or_else(|e| e.into_inner());
        strings.get(self.0 as usize).copied().unwrap_or("")
    }

    pub fn id(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Sym {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Sym {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Sym::new(&s))
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
