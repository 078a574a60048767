//! Progress bars on stderr (indicatif hides them when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar with position, rate and ETA; `what` is its leading message.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} [{elapsed_precise} < {eta_precise}, {per_sec}]")
            .expect("valid template"),
    );
    bar.set_message(what.to_string());
    bar
}
