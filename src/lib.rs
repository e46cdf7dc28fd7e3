//! The library side of the `nequil` command: what other front ends (the Python package) share
//! with it beyond the `nequil` crate itself. [`reproduce`] runs the paper's experiments into a
//! directory with their figures ([`plot`]) and the HTML report ([`report`]), exactly as
//! `nequil reproduce` does; [`progress_bar`] is the command's progress display.

pub mod plot;
pub mod report;
pub mod reproduce;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar with elapsed time and ETA on stderr (hidden when `quiet` or not a terminal).
pub fn progress_bar(total: u64, label: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}
