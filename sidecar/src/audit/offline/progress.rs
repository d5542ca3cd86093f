//! Progress of a table's scan on stderr: an indicatif bar (rows/s, ETA) on a
//! terminal, a plain line a second otherwise (a log file or CI output).

use std::time::Instant;

/// Progress on stderr: a bar on a terminal, a line a second otherwise.
pub(crate) enum Progress {
    Bar(indicatif::ProgressBar),
    Lines {
        name: String,
        total: u64,
        start: Instant,
        last: Instant,
    },
}

impl Progress {
    /// A bar (`tty`) or lines for the scan of `name`, `total` rows.
    pub(crate) fn new(tty: bool, name: &str, total: u64) -> Self {
        Self::labeled(tty, &format!("audit {name}"), total)
    }

    /// A bar (`tty`) or lines headed `label` (`invalidate app.users`), `total` rows.
    pub(crate) fn labeled(tty: bool, label: &str, total: u64) -> Self {
        if tty {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} rows, {rate}, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> ").with_key(
                    "rate",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} rows/s", s.per_sec());
                    },
                ));
            }
            bar.set_message(label.to_string());
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                name: label.to_string(),
                total,
                start: Instant::now(),
                last: Instant::now(),
            }
        }
    }

    /// `rows` scanned so far.
    pub(crate) fn update(&mut self, rows: u64) {
        match self {
            Progress::Bar(b) => b.set_position(rows),
            Progress::Lines {
                name,
                total,
                start,
                last,
            } => {
                if last.elapsed().as_secs() >= 1 {
                    *last = Instant::now();
                    let rate = rows as f64 / start.elapsed().as_secs_f64().max(1e-3);
                    let eta = total.saturating_sub(rows) as f64 / rate.max(1e-3);
                    eprintln!("{name}: {rows}/{total} rows, {rate:.0} rows/s, ETA {eta:.0} s");
                }
            }
        }
    }

    /// The scan is over: the bar is cleared.
    pub(crate) fn finish(self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}
