//! The command's progress display: indicatif bars on stderr, for a training run and for each
//! experiment of `nequil reproduce`.

use indicatif::{ProgressBar, ProgressStyle};
use nequil_paper::reproduce::Progress;

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

/// One [`progress_bar`] per experiment of `nequil reproduce` (none when `quiet`).
pub struct Bars {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl Bars {
    /// Bars on stderr, or none when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Bars { quiet, bar: None }
    }
}

impl Progress for Bars {
    fn start(&mut self, name: &str) {
        self.bar = Some(progress_bar(1000, name, self.quiet));
    }
    fn update(&mut self, done: u64, total: u64) {
        if let Some(pb) = &self.bar {
            pb.set_length(total);
            pb.set_position(done);
        }
    }
    fn finish(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}
