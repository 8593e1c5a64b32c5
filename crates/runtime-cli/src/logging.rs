//! Errors and debug lines to stderr or to `--log`, as text or as runc's JSON lines (conmon and containerd's
//! shim read the last `msg` of that file to report a failure).

use std::io::Write;
use std::path::PathBuf;

use crate::cli::LogFormat;

pub struct Logger {
    file: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

impl Logger {
    pub fn new(file: Option<PathBuf>, format: LogFormat, debug: bool) -> Logger {
        Logger {
            file,
            format,
            debug,
        }
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    /// Logs an error: always to stderr, and to the log file when there is one.
    pub fn error(&self, msg: &str) {
        eprintln!("berth-runtime: {msg}");
        if self.file.is_some() {
            self.write("error", msg);
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let line = match self.format {
            LogFormat::Json => format!(
                "{}\n",
                serde_json::json!({"level": level, "msg": msg, "time": berth_runtime::time::now()})
            ),
            LogFormat::Text => format!(
                "time=\"{}\" level={level} msg={:?}\n",
                berth_runtime::time::now(),
                msg
            ),
        };
        match &self.file {
            Some(p) => {
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}
