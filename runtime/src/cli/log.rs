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
    /// Appends an error line; a log that cannot be written is not worth failing over.
    pub fn error(&self, message: &str) {
        let Some(path) = &self.log else { return };
        let time = strata_runtime::state::rfc3339(strata_runtime::state::now_unix());
        let line = match self.log_format {
            LogFormat::Json => {
                serde_json::json!({"level": "error", "msg": message, "time": time}).to_string()
            }
            LogFormat::Text => format!("time={time:?} level=error msg={message:?}"),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
