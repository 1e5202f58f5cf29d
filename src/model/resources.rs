//! Resource amounts as integers: milli-CPU, bytes, pod slots and extended resources.

use super::Sym;
use serde::Serialize;
use smallvec::SmallVec;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// Upstream's defaults for pods that request nothing, used only when *scoring*
/// (`schedutil.DefaultMilliCPURequest` / `DefaultMemoryRequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Pod slots (node allocatable `pods`); zero on pod requests.
    pub pods: i64,
    /// Extended and hugepage resources, sorted by name symbol.
    pub scalars: SmallVec<[(Sym, i64); 2]>,
}

impl Resources {
    pub fn scalar(&self, name: Sym) -> i64 {
        self.scalars
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }

    pub fn set_scalar(&mut self, name: Sym, value: i64) {
        match self.scalars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => {
                self.scalars.push((name, value));
                self.scalars.sort_by_key(|(n, _)| *n);
            }
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
        for &(n, v) in &other.scalars {
            let cur = self.scalar(n);
            self.set_scalar(n, cur.saturating_add(v));
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        self.pods = self.pods.saturating_sub(other.pods);
        for &(n, v) in &other.scalars {
            let cur = self.scalar(n);
            self.set_scalar(n, cur.saturating_sub(v));
        }
    }

    /// Element-wise maximum (init containers versus the running set).
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for &(n, v) in &other.scalars {
            let cur = self.scalar(n);
            if v > cur {
                self.set_scalar(n, v);
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalars.iter().all(|(_, v)| *v == 0)
    }

    /// CPU and memory as the scorers see them for a single container whose
    /// zero requests are missing: they count as upstream's defaults.
    pub fn non_zero_cpu_mem(&self) -> (i64, i64) {
        let cpu = if self.milli_cpu == 0 {
            DEFAULT_MILLI_CPU_REQUEST
        } else {
            self.milli_cpu
        };
        let mem = if self.memory == 0 {
            DEFAULT_MEMORY_REQUEST
        } else {
            self.memory
        };
        (cpu, mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sub_max_keep_scalars() {
        let gpu = Sym::new("nvidia.com/gpu");
        let mut a = Resources {
            milli_cpu: 100,
            memory: 10,
            ..Default::default()
        };
        let mut b = Resources {
            milli_cpu: 50,
            ..Default::default()
        };
        b.set_scalar(gpu, 2);
        a.add(&b);
        assert_eq!(a.milli_cpu, 150);
        assert_eq!(a.scalar(gpu), 2);
        a.sub(&b);
        assert_eq!(a.milli_cpu, 100);
        assert_eq!(a.scalar(gpu), 0);
        let mut c = Resources::default();
        c.max_with(&b);
        assert_eq!(c.scalar(gpu), 2);
        assert_eq!(c.milli_cpu, 50);
        assert!(Resources::default().is_zero());
        assert_eq!(Resources::default().non_zero_cpu_mem(), (100, 200 << 20));
    }
}
