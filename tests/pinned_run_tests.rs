//! Seeded runs pinned: the final weights and the log of two seeded runs, as FNV-1a hashes of the
//! bytes of `final.safetensors` and `metrics.csv`, as of the version in `CHANGELOG.md`.
//!
//! Together with the random streams (`crates/nequil/tests/known_answer_tests.rs`) they make a
//! change of results a visible, deliberate event: a change that moves these hashes must update them
//! and say so in the changelog. The runs are deep linear chains, which train to the same bits on
//! the `portable` and `avx2` SIMD paths (`avx512` runs its own small products, fused, and differs
//! in the last bits: see the book's SIMD section); both are checked here where the CPU has them,
//! whatever path the test process itself was given.

use std::path::PathBuf;
use std::process::Command;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Online Gaussian data (normal draws at every step), SGD with S = 4, weight decay.
const ONLINE: &str = r#"seed = 11
[model]
kind = "linear"
widths = [4, 6, 4]
[data]
x_cov = { phi = 0.5 }
noise_cov = { scalar = 0.25 }
[train]
batch_size = 4
lr = 0.02
steps = 3000
weight_decay = 0.001
[probes]
every = 1000
eval_samples = 64
"#;

/// A fixed dataset drawn once, passes in reshuffled order (the shuffle's index draws).
const SHUFFLED: &str = r#"seed = 12
[model]
kind = "linear"
widths = [4, 6, 4]
init = "xavier"
[data]
mode = "fixed"
n = 64
replacement = false
target = "linear"
noise_cov = { scalar = 0.1 }
[train]
batch_size = 8
lr = 0.02
steps = 2000
[probes]
every = 500
"#;

/// Pinned: (name, spec, FNV-1a of final.safetensors, FNV-1a of metrics.csv), the same on the
/// `portable` and `avx2` paths.
const PINNED: [(&str, &str, u64, u64); 2] = [
    ("online", ONLINE, 0x74273ca7df2e922b, 0xae49580a1ccbaba4),
    ("shuffled", SHUFFLED, 0x8eb3cc69e9c1f139, 0x8f4e1ffdcee07b41),
];

fn simd_paths() -> Vec<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_nequil"))
        .env_remove("NEQUIL_SIMD")
        .arg("simd")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let supported: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("supported "))
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    ["portable", "avx2"]
        .iter()
        .filter(|p| supported.iter().any(|s| s == *p))
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn seeded_runs_give_the_pinned_weights_and_logs() {
    let d = std::env::temp_dir().join(format!("nequil-pinned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let paths = simd_paths();
    assert!(paths.iter().any(|p| p == "portable"));
    let mut mismatches = vec![];
    for (name, spec, weights, metrics) in PINNED {
        let p = d.join(format!("{name}.toml"));
        std::fs::write(&p, spec).unwrap();
        for path in &paths {
            let out: PathBuf = d.join(format!("{name}-{path}"));
            let o = Command::new(env!("CARGO_BIN_EXE_nequil"))
                .env("NEQUIL_SIMD", path)
                .arg("run")
                .arg(&p)
                .arg("--out")
                .arg(&out)
                .arg("--quiet")
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{name} on {path}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let w = fnv1a(&std::fs::read(out.join("final.safetensors")).unwrap());
            let m = fnv1a(&std::fs::read(out.join("metrics.csv")).unwrap());
            if (w, m) != (weights, metrics) {
                mismatches.push(format!(
                    "{name} on {path}: final.safetensors {w:#018x} (pinned {weights:#018x}), metrics.csv {m:#018x} \
                     (pinned {metrics:#018x})"
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&d);
    assert!(
        mismatches.is_empty(),
        "seeded results changed; if deliberate, update the pinned hashes and CHANGELOG.md:\n{}",
        mismatches.join("\n")
    );
}
