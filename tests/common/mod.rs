//! Helpers shared by the `nequil` command's integration tests (each test file includes this module
//! with `mod common;` and uses what it needs).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The `nequil` binary under test, without the environment variables that change what it does
/// (a Slurm array task's, the memory cap `NEQUIL_MAX_MEMORY`), so a test sees the defaults unless
/// it sets them itself.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nequil"));
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "NEQUIL_MAX_MEMORY",
    ] {
        c.env_remove(v);
    }
    c
}

/// A fresh, empty scratch directory `nequil-{suite}-{pid}-{name}` in the temporary directory
/// (whatever an earlier run left there is removed first).
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nequil-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
