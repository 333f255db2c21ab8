//! Progress of long scans over the event log: start-up replay, `verify`,
//! `export` and `reconcile`. When stderr is a terminal it is an indicatif
//! bar. Otherwise it is an info log line at most every
//! [`PROGRESS_LOG_INTERVAL`], so that a service manager's journal shows that
//! a long start is moving.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Time between progress log lines when stderr is not a terminal.
pub const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Items between clock reads in log mode: reading the clock for every event
/// would cost more than folding a small event.
const CLOCK_CHECK_ITEMS: u64 = 1024;

/// Redraws per second of the terminal bar; indicatif's default of 20 costs
/// measurable time on a scan of millions of events.
const BAR_REFRESH_HZ: u8 = 5;

enum Sink {
    Bar(ProgressBar),
    Log { next_log: Instant },
}

/// Reports how far a scan of `total` items has come.
pub struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    sink: Sink,
}

impl Progress {
    /// Starts reporting a scan of `total` items; `label` names the work in
    /// the bar and the log lines ("verifying the event log").
    pub fn start(label: &'static str, total: u64) -> Progress {
        let started = Instant::now();
        let sink = if std::io::stderr().is_terminal() {
            let target = ProgressDrawTarget::stderr_with_hz(BAR_REFRESH_HZ);
            let bar = ProgressBar::with_draw_target(Some(total), target);
            let template = "{msg} [{bar:30}] {human_pos}/{human_len} events, {eta} left";
            // The template is a constant that indicatif accepts; a typo
            // would show at the first run of any offline command.
            let style = ProgressStyle::with_template(template)
                .expect("the progress template is valid")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label);
            Sink::Bar(bar)
        } else {
            Sink::Log { next_log: started + PROGRESS_LOG_INTERVAL }
        };
        Progress { label, total, done: 0, started, sink }
    }

    /// Counts one more item done.
    pub fn advance(&mut self) {
        self.done += 1;
        match &mut self.sink {
            Sink::Bar(bar) => bar.inc(1),
            Sink::Log { next_log } => {
                if !self.done.is_multiple_of(CLOCK_CHECK_ITEMS) {
                    return;
                }
                let now = Instant::now();
                if now < *next_log {
                    return;
                }
                *next_log = now + PROGRESS_LOG_INTERVAL;
                let elapsed_s = self.started.elapsed().as_secs().max(1);
                tracing::info!(
                    done = self.done,
                    total = self.total,
                    events_per_second = self.done / elapsed_s,
                    "{}",
                    self.label
                );
            }
        }
    }

    /// Items counted so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Removes the bar; log mode has nothing to close.
    pub fn finish(&self) {
        if let Sink::Bar(bar) = &self.sink {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
