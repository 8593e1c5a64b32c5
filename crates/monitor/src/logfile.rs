//! Container logs in docker's `json-file` format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-23T06:43:45.123456789Z"}`, so docker users
//! (and their tools) read them as they are. A line longer than 16 KiB is split, as docker does, and
//! the last piece of a stream that ends without a newline is written as it is.
//!
//! Rotation by size: when the live file passes `max_size` bytes it becomes `<log>.1` (the older ones
//! shift up, the oldest beyond `max_files` is deleted) and a new live file starts.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Longest piece of a line in one entry (docker's limit).
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (and everything, with a terminal).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Serialize)]
struct OutEntry<'a> {
    log: &'a str,
    stream: &'a str,
    time: &'a str,
}

/// One log entry as read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    /// The text, newline included when the line had one.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
}

impl Entry {
    /// The entry's time in nanoseconds since the epoch (0 if unreadable).
    pub fn time_ns(&self) -> i64 {
        parse_time_ns(&self.time).unwrap_or(0)
    }
}

/// Appends entries to a log, rotating it by size.
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
    pending: [Vec<u8>; 2],
}

impl Writer {
    /// Opens (appending to) `path`.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Adds output of `stream`: complete lines (and pieces of overlong ones) are written at once,
    /// the rest waits for its newline.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let i = stream as usize;
        self.pending[i].extend_from_slice(data);
        let mut start = 0;
        let buf = std::mem::take(&mut self.pending[i]);
        while start < buf.len() {
            let rest = &buf[start..];
            let end = match rest.iter().position(|&b| b == b'\n') {
                Some(p) if p < MAX_LINE => p + 1,
                _ if rest.len() >= MAX_LINE => MAX_LINE,
                _ => break,
            };
            self.entry(stream, &rest[..end])?;
            start += end;
        }
        self.pending[i] = buf[start..].to_vec();
        Ok(())
    }

    /// Writes what is waiting for a newline (at the end of the container's output).
    pub fn flush_partial(&mut self) -> io::Result<()> {
        for s in [Stream::Stdout, Stream::Stderr] {
            let p = std::mem::take(&mut self.pending[s as usize]);
            if !p.is_empty() {
                self.entry(s, &p)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, stream: Stream, text: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(text);
        let time = berth_runtime::time::rfc3339(SystemTime::now());
        let mut line = serde_json::to_vec(&OutEntry {
            log: &text,
            stream: stream.name(),
            time: &time,
        })
        .map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        if self.max_size > 0 && self.size >= self.max_size {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(rotated(&self.path, self.max_files - 1));
        for n in (1..self.max_files - 1).rev() {
            let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `<log>.<n>`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Every entry of a log, oldest first (rotated files first); unreadable lines are skipped.
pub fn read_all(path: &Path, max_files: u32) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for n in (1..max_files.max(1)).rev() {
        if let Ok(f) = File::open(rotated(path, n)) {
            read_lines(BufReader::new(f), &mut out)?;
        }
    }
    match File::open(path) {
        Ok(f) => read_lines(BufReader::new(f), &mut out)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

fn read_lines(r: impl BufRead, out: &mut Vec<Entry>) -> io::Result<()> {
    for line in r.lines() {
        if let Ok(e) = serde_json::from_str::<Entry>(&line?) {
            out.push(e);
        }
    }
    Ok(())
}

/// Follows a live log (`logs -f`): returns the entries written since the last call, across rotations.
pub struct Follower {
    path: PathBuf,
    file: Option<BufReader<File>>,
    ino: u64,
    partial: String,
}

impl Follower {
    /// Starts at the current end of `path` (entries already read by [`read_all`] are not repeated).
    pub fn at_end(path: &Path) -> io::Result<Follower> {
        let mut f = Follower {
            path: path.to_path_buf(),
            file: None,
            ino: 0,
            partial: String::new(),
        };
        if let Ok(mut file) = File::open(path) {
            f.ino = file.metadata()?.ino();
            file.seek(SeekFrom::End(0))?;
            f.file = Some(BufReader::new(file));
        }
        Ok(f)
    }

    /// New complete entries.
    pub fn poll(&mut self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        loop {
            if let Some(r) = &mut self.file {
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line)? == 0 {
                        break;
                    }
                    self.partial.push_str(&line);
                    if self.partial.ends_with('\n') {
                        if let Ok(e) = serde_json::from_str::<Entry>(&self.partial) {
                            out.push(e);
                        }
                        self.partial.clear();
                    }
                }
            }
            // Rotated away (or not there before)? Move to the new live file.
            match std::fs::metadata(&self.path) {
                Ok(m) if self.file.is_none() || m.ino() != self.ino => {
                    self.file = Some(BufReader::new(File::open(&self.path)?));
                    self.ino = m.ino();
                    self.partial.clear();
                }
                _ => return Ok(out),
            }
        }
    }
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time (`Z` or `+00:00`, optional fraction).
pub fn parse_time_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let mut f = frac[..digits].to_string();
        f.truncate(9);
        while f.len() < 9 {
            f.push('0');
        }
        nanos = f.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "+00:00" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = berth_runtime::time::days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    Some(secs * 1_000_000_000 + nanos)
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_partials_and_long_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = Writer::open(&p, 0, 1).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.write(Stream::Stdout, b"o\n\"q\"").unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 5]).unwrap();
        w.flush_partial().unwrap();
        let e = read_all(&p, 1).unwrap();
        let logs: Vec<_> = e.iter().map(|e| (e.stream.as_str(), e.log.len())).collect();
        assert_eq!(e[0].log, "one\n");
        assert_eq!(e[1].log, "err\n");
        assert_eq!(e[1].stream, "stderr");
        assert_eq!(e[2].log, "two\n");
        assert_eq!(logs[3], ("stdout", MAX_LINE), "{logs:?}");
        assert!(e[3].log.starts_with("\"q\"x"));
        assert_eq!(e[4].log.len(), 8);
        assert!(e.iter().all(|e| e.time_ns() > 1_700_000_000_000_000_000));
    }

    #[test]
    fn rotation_keeps_max_files_and_follower_crosses_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = Writer::open(&p, 300, 3).unwrap();
        let mut f = Follower::at_end(&p).unwrap();
        let mut seen = Vec::new();
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
            if i % 7 == 0 {
                seen.extend(f.poll().unwrap());
            }
        }
        seen.extend(f.poll().unwrap());
        assert!(rotated(&p, 2).exists() && !rotated(&p, 3).exists());
        let all = read_all(&p, 3).unwrap();
        assert!(all.len() < 40 && all.last().unwrap().log == "line 39\n");
        // Oldest first, in order.
        let nums: Vec<i32> = all
            .iter()
            .map(|e| e.log.trim()[5..].parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        // The follower polled at least every 7 lines, so with files of ~3 lines it may miss some
        // when two rotations happen between polls; what it saw is in order and ends at the last.
        assert_eq!(seen.last().unwrap().log, "line 39\n");
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time_ns("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse_time_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_time_ns("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_time_ns("yesterday"), None);
    }
}
