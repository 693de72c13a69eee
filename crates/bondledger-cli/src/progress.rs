//! Progress bars on the terminal; nothing when output is not a terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shown only after this long: quick work stays quiet.
const SHOW_AFTER: Duration = Duration::from_millis(800);

pub struct Bar {
    started: Instant,
    /// Counted from the start, drawn once the work has run [`SHOW_AFTER`],
    /// so that its rate and time left are those of the whole work; `None`
    /// when output is not a terminal.
    bar: Option<ProgressBar>,
    shown: bool,
}

impl Bar {
    /// Counts events.
    pub fn new(label: &str) -> Self {
        Bar::with_template(
            label,
            "{msg} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)",
        )
    }

    /// Counts the lines of a file.
    pub fn lines(label: &str) -> Self {
        Bar::with_template(
            label,
            "{msg} [{bar:40}] line {pos}/{len} ({per_sec}, {eta} left)",
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
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
                .with_style(style)
                .with_message(label.to_owned())
        });
        Bar {
            started: Instant::now(),
            bar,
            shown: false,
        }
    }

    /// Whether the bar can be seen: only on a terminal. Work done only to
    /// size the bar is skipped where it cannot.
    pub fn visible(&self) -> bool {
        self.bar.is_some()
    }

    /// `done` of `total` events.
    pub fn update(&mut self, done: i64, total: i64) {
        let Some(bar) = &self.bar else { return };
        bar.set_length(u64::try_from(total).unwrap_or(0));
        bar.set_position(u64::try_from(done).unwrap_or(0));
        if !self.shown && self.started.elapsed() >= SHOW_AFTER {
            self.shown = true;
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
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
