//! `--log FILE` and `--log-format text|json`: strata's errors are also appended to the log file, in
//! the format containerd's shim reads back (one JSON object per line with level, msg and time).

use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Also write errors to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of the --log file.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Opens the log file now: `exec` joins the container's mount namespace before it can fail, and the
    /// path names a file of the host's (runc opens its log at start-up too). A log that cannot be opened
    /// is not worth failing over.
    pub fn open(&self) -> Log {
        let file = self.log.as_ref().and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        });
        Log {
            file,
            format: self.log_format,
        }
    }
}

/// The opened `--log` file.
pub struct Log {
    file: Option<std::fs::File>,
    format: LogFormat,
}

impl Log {
    /// Appends an error line.
    pub fn error(&mut self, message: &str) {
        let Some(f) = &mut self.file else { return };
        let time = strata_runtime::state::rfc3339(strata_runtime::state::now_unix());
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": "error", "msg": message, "time": time}).to_string()
            }
            LogFormat::Text => format!("time={time:?} level=error msg={message:?}"),
        };
        let _ = writeln!(f, "{line}");
    }
}
