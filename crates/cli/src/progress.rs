//! Progress display for `pull` and `push`: one bar per layer (bytes done / total) on stderr,
//! drawn with `indicatif`, only when stderr is a terminal and `--quiet` was not given. Otherwise
//! every call here is a no-op and nothing but the command's result is printed.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether bars are drawn: only for a terminal, and never with `--quiet`.
pub fn enabled(quiet: bool, stderr_is_terminal: bool) -> bool {
    !quiet && stderr_is_terminal
}

/// The label of a blob's bar: `Copying blob 0123456789ab` (12 hex digits, like podman).
pub fn label(kind: &str, digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    format!("Copying {kind} {}", &hex[..hex.len().min(12)])
}

const TEMPLATE: &str = "{prefix} {bar:30} {bytes:>10} / {total_bytes:<10} {msg}";

/// The bars of one command, drawn together on stderr.
pub struct Progress {
    multi: Option<MultiProgress>,
    drawn: AtomicBool,
}

impl Progress {
    /// Bars on stderr when `enabled` (see [`enabled`]), else nothing at all.
    pub fn new(enabled: bool) -> Progress {
        Progress {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            drawn: AtomicBool::new(false),
        }
    }

    /// A bar for a blob of `total` bytes, labelled `Copying <kind> <digest>`; bars stay in the
    /// order they were added.
    pub fn bar(&self, kind: &str, digest: &str, total: u64) -> Bar {
        let Some(m) = &self.multi else {
            return Bar(None);
        };
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let pb = m.add(ProgressBar::new(total).with_style(style));
        pb.set_prefix(label(kind, digest));
        pb.set_message("waiting");
        self.drawn.store(true, Ordering::Relaxed);
        Bar(Some(pb))
    }

    /// A line above the bars (nothing when disabled).
    pub fn println(&self, line: &str) {
        if let Some(m) = &self.multi {
            let _ = m.println(line);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // indicatif leaves the cursor at the end of the last bar: what the command prints next
        // (the image id, an error) starts on a line of its own.
        if self.drawn.load(Ordering::Relaxed) {
            eprintln!();
        }
    }
}

/// One blob's bar (a no-op when progress is disabled).
pub struct Bar(Option<ProgressBar>);

impl Bar {
    /// The transfer started.
    pub fn start(&self) {
        if let Some(b) = &self.0 {
            b.set_message("");
        }
    }

    /// `n` more bytes went through.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Bytes through so far (0 when disabled).
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.0.as_ref().map_or(0, |b| b.position())
    }

    /// Done: the bar is filled and says `msg` (`done`, `already exists`, ...); a bar already
    /// finished keeps what it says.
    pub fn finish(&self, msg: &'static str) {
        if let Some(b) = &self.0 {
            if b.is_finished() {
                return;
            }
            if let Some(len) = b.length() {
                b.set_position(len);
            }
            b.finish_with_message(msg);
        }
    }

    /// Failed: the bar stops where it was.
    pub fn fail(&self) {
        if let Some(b) = &self.0 {
            b.abandon_with_message("failed");
        }
    }

    /// `w`, counting what is written through it on this bar.
    pub fn writer<W: Write>(&self, w: W) -> Counted<'_, W> {
        Counted {
            inner: w,
            bar: self,
        }
    }

    /// `r`, counting what is read through it on this bar.
    pub fn reader<R: Read>(&self, r: R) -> Counted<'_, R> {
        Counted {
            inner: r,
            bar: self,
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // A bar neither finished nor failed (an error path) must not keep ticking.
        if let Some(b) = &self.0 {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}

/// A reader or writer that moves a [`Bar`] by the bytes going through it.
pub struct Counted<'a, T> {
    inner: T,
    bar: &'a Bar,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_terminal_without_quiet() {
        assert!(enabled(false, true));
        assert!(!enabled(true, true), "--quiet wins over a terminal");
        assert!(!enabled(false, false), "pipes and files get no bars");
        assert!(!enabled(true, false));
    }

    #[test]
    fn labels_use_twelve_hex_digits() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(label("blob", &d), "Copying blob abababababab");
        assert_eq!(label("config", "sha256:12"), "Copying config 12");
    }

    #[test]
    fn template_parses() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }

    #[test]
    fn disabled_progress_draws_nothing_and_counts_nothing() {
        let p = Progress::new(false);
        let bar = p.bar("blob", "sha256:00", 10);
        let mut out = Vec::new();
        bar.writer(&mut out).write_all(b"hello").unwrap();
        assert_eq!(out, b"hello", "the bytes still go through");
        assert_eq!(bar.position(), 0);
        bar.finish("done");
        p.println("not shown");
    }

    #[test]
    fn counted_reader_and_writer_move_the_bar() {
        // A hidden bar still counts: what a terminal would see, without drawing.
        let bar = Bar(Some(ProgressBar::hidden()));
        bar.0.as_ref().unwrap().set_length(11);
        let mut out = Vec::new();
        {
            let mut w = bar.writer(&mut out);
            w.write_all(b"hello ").unwrap();
            w.write_all(b"world").unwrap();
        }
        assert_eq!(bar.position(), 11);
        let mut back = Vec::new();
        bar.reader(&out[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, b"hello world");
        assert_eq!(bar.position(), 22);
        bar.finish("already exists");
        assert_eq!(bar.position(), 11, "finish shows the whole blob");
        assert!(bar.0.as_ref().unwrap().is_finished());
        bar.finish("done");
        assert_eq!(bar.0.as_ref().unwrap().message(), "already exists");
    }
}
