//! Runtime SIMD dispatch: one portable binary that uses the vector instructions of the CPU it runs
//! on.
//!
//! The engine is compiled for the baseline of its target (x86-64: SSE2), and its hot loops are
//! compiled a second and third time with AVX2+FMA and with AVX-512 enabled. Once per process the
//! best [`SimdPath`] the CPU supports is chosen (or the one the environment variable
//! `NEQUIL_SIMD` names: `portable`, `avx2`, `avx512`, or `auto`), and every dispatched kernel runs
//! that path's version. A binary built anywhere therefore runs everywhere, at the speed of a
//! build tuned to the CPU it runs on.
//!
//! The paths differ in their floating-point rounding only where the code says so:
//!
//! * `portable` never fuses a multiply and an add;
//! * `avx2` fuses them in [`crate::core::math::tanh`] (its polynomial) and nowhere else: every other
//!   kernel runs the portable loops, vectorized without reassociation, so its results are those of
//!   `portable` bit for bit except through tanh;
//! * `avx512` also uses the AVX-512 register-tiled small products of [`crate::core::linalg`], which fuse
//!   and sum in a different order.
//!
//! Kernels in other modules are written once, as an `#[inline(always)]` body, and instantiated per
//! path with `multiversion!` (crate-private). An `Isa` token (crate-private) certifies that the
//! CPU was checked for the path it names, which makes the dispatching functions safe to call.

use crate::{invalid, Error, Result};
use std::fmt;
use std::sync::OnceLock;

/// The environment variable that forces a [`SimdPath`].
pub const ENV: &str = "NEQUIL_SIMD";

/// A set of instructions the hot loops can be compiled for, from the most portable to the widest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdPath {
    /// The target's baseline (SSE2 on x86-64); no fused multiply-add. The only path on other
    /// architectures.
    Portable,
    /// AVX2 with FMA (x86-64-v3: Intel Haswell, AMD Zen and later).
    Avx2,
    /// AVX-512 Foundation, with AVX2 and FMA (Intel Skylake-SP, AMD Zen 4 and later).
    Avx512,
}

impl SimdPath {
    /// Every path, in increasing order of width.
    pub const ALL: [SimdPath; 3] = [SimdPath::Portable, SimdPath::Avx2, SimdPath::Avx512];

    /// The name used by `NEQUIL_SIMD`: `portable`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            SimdPath::Portable => "portable",
            SimdPath::Avx2 => "avx2",
            SimdPath::Avx512 => "avx512",
        }
    }

    /// The path of a name (ASCII case ignored), if it is one.
    pub fn parse(name: &str) -> Option<SimdPath> {
        SimdPath::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// Whether the path's kernels use fused multiply-adds (so its last bits can differ from
    /// `portable`'s).
    pub fn uses_fma(self) -> bool {
        self != SimdPath::Portable
    }

    /// Whether this CPU can run the path.
    pub fn is_supported(self) -> bool {
        match self {
            SimdPath::Portable => true,
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 => SimdPath::Avx2.is_supported() && is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

impl fmt::Display for SimdPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The paths this CPU supports, in increasing order (always starts with `Portable`).
pub fn supported() -> Vec<SimdPath> {
    SimdPath::ALL.into_iter().filter(|p| p.is_supported()).collect()
}

fn names(paths: &[SimdPath]) -> String {
    paths.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

/// The path for a value of `NEQUIL_SIMD` (`None`: unset) on a CPU that supports `supported`: the
/// best supported path when unset, empty or `auto`, the named path otherwise. An unknown name, or
/// a path missing from `supported`, is an [`Error::Invalid`] that names the variable, the value
/// and the supported paths. Pure, so that the rule can be tested without touching the process
/// environment; [`init`] applies it to the real one.
pub fn select(value: Option<&str>, supported: &[SimdPath]) -> Result<SimdPath> {
    let best = supported.iter().copied().max().unwrap_or(SimdPath::Portable);
    let Some(raw) = value else { return Ok(best) };
    let v = raw.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("auto") {
        return Ok(best);
    }
    match SimdPath::parse(v) {
        Some(p) if supported.contains(&p) => Ok(p),
        Some(p) => Err(invalid!(
            "{ENV}={raw}: this CPU does not support the {p} path (it supports: {})",
            names(supported)
        )),
        None => Err(invalid!(
            "{ENV}={raw}: unknown SIMD path; expected portable, avx2, avx512 or auto (this CPU supports: {})",
            names(supported)
        )),
    }
}

/// The choice made once per process: the path, and the error [`init`] reports if the environment
/// asked for something impossible (the path is then `Portable`).
struct Choice {
    path: SimdPath,
    error: Option<Error>,
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

fn choice() -> &'static Choice {
    CHOICE.get_or_init(|| {
        let value = std::env::var_os(ENV).map(|v| v.to_string_lossy().into_owned());
        match select(value.as_deref(), &supported()) {
            Ok(path) => Choice { path, error: None },
            Err(e) => Choice {
                path: SimdPath::Portable,
                error: Some(e),
            },
        }
    })
}

/// Chooses the process's path (once; later calls return the same answer): the best the CPU
/// supports, or the one `NEQUIL_SIMD` forces. Errors if `NEQUIL_SIMD` holds an unknown name or a
/// path this CPU lacks (see [`select`]); the process then runs the portable path, so callers
/// that want to honour the request should stop. The command-line tool calls this first.
pub fn init() -> Result<SimdPath> {
    let c = choice();
    match &c.error {
        Some(e) => Err(e.clone()),
        None => Ok(c.path),
    }
}

/// The process's path (chosen on first use as [`init`] does; `Portable` if `NEQUIL_SIMD` is
/// invalid). Cheap: an atomic load after the first call. Never a path the CPU lacks.
#[inline]
pub fn active() -> SimdPath {
    choice().path
}

/// A [`SimdPath`] that this CPU has been checked to support. Only [`Isa::active`] and
/// [`Isa::new`] make one, which is what lets `multiversion!` functions call the
/// `#[target_feature]` versions of their kernels safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Isa(SimdPath);

impl Isa {
    /// The process's path ([`active`]).
    #[inline]
    pub(crate) fn active() -> Isa {
        Isa(active())
    }
    /// `path`, if this CPU supports it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new(path: SimdPath) -> Option<Isa> {
        path.is_supported().then_some(Isa(path))
    }
    /// Every path this CPU supports (the tests of the multiversioned kernels loop over them).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn all() -> Vec<Isa> {
        supported().into_iter().map(Isa).collect()
    }
    /// The path.
    #[inline]
    pub(crate) fn path(self) -> SimdPath {
        self.0
    }
}

/// Clears the upper halves of the vector registers (`vzeroupper`) if the CPU has AVX; nothing
/// otherwise. faer's large GEMM kernels are assembly that returns with them dirty, and on some CPUs
/// code compiled for the baseline (legacy SSE encodings: everything outside the multiversioned
/// kernels) then runs many times slower, with a transition penalty or a false dependency per
/// instruction. Call it after every call into faer.
#[inline]
pub(crate) fn clean_upper() {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx") {
        #[target_feature(enable = "avx")]
        fn vzeroupper() {
            std::arch::x86_64::_mm256_zeroupper();
        }
        // SAFETY: the CPU has AVX (checked just above).
        unsafe { vzeroupper() }
    }
}

/// Defines `fn NAME(isa: Isa, args…) -> R` that runs a kernel body compiled for `isa`'s path.
///
/// ```text
/// multiversion! {
///     /// docs
///     pub(crate) fn relu_on(out: &mut [f64], z: &[f64]) = relu_body;
/// }
/// multiversion! {
///     pub(crate) fn tanh_on(out: &mut [f64], z: &[f64]) =
///         portable: tanh_body::<false>, fma: tanh_body::<true>;
/// }
/// ```
///
/// The body (an `#[inline(always)]` function) is inlined into three wrappers: the plain one, one
/// with `avx2,fma` enabled and one with `avx512f,avx2,fma` enabled. The second form names a
/// separate body for the paths with FMA.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path;
    ) => {
        $crate::simd::multiversion! {
            $(#[$meta])*
            $vis fn $name($($arg: $ty),*) $(-> $ret)? = portable: $body, fma: $body;
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? =
            portable: $portable:path, fma: $fma:path;
    ) => {
        $(#[$meta])*
        #[inline]
        $vis fn $name(isa: $crate::simd::Isa, $($arg: $ty),*) $(-> $ret)? {
            match isa.path() {
                #[cfg(target_arch = "x86_64")]
                $crate::simd::SimdPath::Avx2 => {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                        $fma($($arg),*)
                    }
                    // SAFETY: an `Isa` names only paths the CPU supports; AVX2 implies the
                    // features enabled above.
                    unsafe { avx2($($arg),*) }
                }
                #[cfg(target_arch = "x86_64")]
                $crate::simd::SimdPath::Avx512 => {
                    #[target_feature(enable = "avx512f,avx2,fma")]
                    unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                        $fma($($arg),*)
                    }
                    // SAFETY: as above, for the AVX-512 path's features.
                    unsafe { avx512($($arg),*) }
                }
                _ => $portable($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;
    use SimdPath::*;

    #[test]
    fn select_follows_the_variable_and_the_cpu() {
        let all = [Portable, Avx2, Avx512];
        assert_eq!(select(None, &all).unwrap(), Avx512);
        assert_eq!(select(None, &[Portable, Avx2]).unwrap(), Avx2);
        assert_eq!(select(None, &[Portable]).unwrap(), Portable);
        assert_eq!(select(Some(""), &[Portable, Avx2]).unwrap(), Avx2);
        assert_eq!(select(Some("auto"), &[Portable, Avx2]).unwrap(), Avx2);
        assert_eq!(select(Some("portable"), &all).unwrap(), Portable);
        assert_eq!(select(Some("AVX2"), &all).unwrap(), Avx2);
        assert_eq!(select(Some(" avx512 "), &all).unwrap(), Avx512);
    }

    #[test]
    fn select_rejects_unknown_and_unsupported_paths_naming_the_variable() {
        let e = select(Some("bogus"), &[Portable, Avx2]).unwrap_err();
        let Error::Invalid(m) = &e else { panic!("{e:?}") };
        assert!(m.contains("NEQUIL_SIMD") && m.contains("bogus"), "{m}");
        assert!(m.contains("portable, avx2"), "{m}");
        let e = select(Some("avx512"), &[Portable, Avx2]).unwrap_err();
        let Error::Invalid(m) = &e else { panic!("{e:?}") };
        assert!(
            m.contains("NEQUIL_SIMD=avx512") && m.contains("does not support"),
            "{m}"
        );
        assert!(select(Some("avx2"), &[Portable]).is_err());
    }

    #[test]
    fn the_active_path_is_supported() {
        let s = supported();
        assert_eq!(s[0], Portable);
        assert!(s.contains(&active()));
        assert!(Isa::all().iter().all(|i| s.contains(&i.path())));
        for p in SimdPath::ALL {
            assert_eq!(SimdPath::parse(p.name()), Some(p));
            assert_eq!(Isa::new(p).is_some(), s.contains(&p));
        }
    }
}
