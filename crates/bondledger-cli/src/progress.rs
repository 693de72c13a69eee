//! Progress bars on the terminal; nothing when output is not a terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Shown only after this long: quick work stays quiet.
const SHOW_AFTER: Duration = Duration::from_millis(800);

pub struct Bar {
    label: String,
    template: &'static str,
    started: Instant,
    bar: Option<ProgressBar>,
    terminal: bool,
}

impl Bar {
    /// Counts events.
    pub fn new(label: &str) -> Self {
        Bar::with_template(
            label,
            "{msg} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)",
        )
    }

    /// Counts bytes of a file.
    pub fn bytes(label: &str) -> Self {
        Bar::with_template(
            label,
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
    }

    fn with_template(label: &str, template: &'static str) -> Self {
        Bar {
            label: label.to_owned(),
            template,
            started: Instant::now(),
            bar: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// `done` of `total` events.
    pub fn update(&mut self, done: i64, total: i64) {
        if !self.terminal || self.started.elapsed() < SHOW_AFTER {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(self.template)
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.set_message(self.label.clone());
            bar
        });
        bar.set_length(u64::try_from(total).unwrap_or(0));
        bar.set_position(u64::try_from(done).unwrap_or(0));
    }

    /// As [`Self::update`], for counts that are never negative.
    pub fn update_unsigned(&mut self, done: u64, total: u64) {
        self.update(
            i64::try_from(done).unwrap_or(i64::MAX),
            i64::try_from(total).unwrap_or(i64::MAX),
        );
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
