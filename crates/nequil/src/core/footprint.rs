//! Memory footprints: what a component will allocate, part by part, in bytes, known from its
//! shapes before any of its buffers exists.
//!
//! Every component whose allocations grow with its input declares its footprint beside the code
//! that allocates: each layer kind ([`crate::core::layers::Layer::footprint`]), a model's
//! workspace ([`crate::core::models::Model::footprint`]), the data sources
//! ([`crate::core::data`]), the probes ([`crate::train::Probe::footprint`]), the analyses. A
//! declaration is a bound from above on the peak of live bytes the component adds while it runs,
//! close enough to be honest: the footprint tests (`tests/footprint_tests.rs`) run every layer kind
//! and every probe under a counting allocator and check that the measured peak lies between half
//! the declaration and the declaration.
//!
//! The lab sums the declarations of a run before building anything large and refuses the run when
//! the total exceeds the memory available (`crate::lab::resources::check`), naming the largest
//! parts; the core itself reads no file and knows no machine.

/// What something will allocate, part by part, in bytes. Sizes are `u128` products of the shapes
/// (saturating), so that no size overflows however large those are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    parts: Vec<(String, u128)>,
}

/// Bytes of one `f64`.
pub const F64: u128 = 8;

/// Bytes allowed for what a solver keeps besides its arrays, whatever the shapes: a model's
/// description, names, the handles of its buffers (2 KiB).
pub const BOOKKEEPING: u128 = 2048;

impl Footprint {
    /// No parts yet.
    pub fn new() -> Self {
        Footprint::default()
    }

    /// A footprint of one part: `count` values of `bytes_each` bytes for `what`.
    pub fn of(what: impl Into<String>, count: u128, bytes_each: u128) -> Self {
        let mut f = Footprint::new();
        f.add(what, count, bytes_each);
        f
    }

    /// Adds `count` values of `bytes_each` bytes for `what` (a phrase that names the component and
    /// its spec key, e.g. `data.n: the fixed dataset`).
    pub fn add(&mut self, what: impl Into<String>, count: u128, bytes_each: u128) {
        self.parts.push((what.into(), count.saturating_mul(bytes_each)));
    }

    /// Adds every part of `other`.
    pub fn extend(&mut self, other: Footprint) {
        self.parts.extend(other.parts);
    }

    /// Adds every part of `other`, each name prefixed by `prefix` and `: ` (the component that
    /// holds them, e.g. the spec key of a probe).
    pub fn extend_named(&mut self, prefix: &str, other: Footprint) {
        self.parts
            .extend(other.parts.into_iter().map(|(w, b)| (format!("{prefix}: {w}"), b)));
    }

    /// The parts, in the order they were added: `(what, bytes)`.
    pub fn parts(&self) -> &[(String, u128)] {
        &self.parts
    }

    /// The total in bytes (saturating).
    pub fn total(&self) -> u128 {
        self.parts.iter().fold(0u128, |a, (_, b)| a.saturating_add(*b))
    }

    /// The non-empty parts, largest first, as `what 1.2 GB`, joined by `; `.
    pub fn listing(&self) -> String {
        let mut parts: Vec<&(String, u128)> = self.parts.iter().filter(|(_, b)| *b > 0).collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.1));
        parts
            .iter()
            .map(|(w, b)| format!("{w} {}", human_bytes(*b)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A byte count for people: `640.0 GB`, `4.8 MB`, `512 B` (powers of 1000).
pub fn human_bytes(b: u128) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_sum_and_list_largest_first() {
        let mut f = Footprint::of("a", 10, F64);
        f.add("b", 1000, 1);
        f.add("empty", 0, 8);
        let mut g = Footprint::new();
        g.add("c", u128::MAX, 2);
        assert_eq!(f.total(), 1080);
        assert_eq!(f.listing(), "b 1.0 kB; a 80 B");
        f.extend_named("probes.x", g);
        assert_eq!(f.total(), u128::MAX);
        assert!(f.listing().starts_with("probes.x: c "));
    }
}
