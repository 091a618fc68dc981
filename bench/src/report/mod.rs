//! The results folder: results.json (+ its schema), samples.csv, report.md and SVG plots under plots/.

pub mod csv;
pub mod json;
pub mod markdown;
pub mod plots;

use std::path::Path;

use json::Results;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Json(#[from] json::JsonError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("plot {path}: {problem}")]
    Plot { path: String, problem: String },
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Write every file of a results folder from `results`.
pub fn write_all(dir: &Path, results: &Results) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir.join("plots")).map_err(|source| ReportError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    results.write(dir)?;
    render(dir, results)
}

/// Re-render the derived files (csv, markdown, plots) from `results`.
pub fn render(dir: &Path, results: &Results) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir.join("plots")).map_err(|source| ReportError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    write_text(&dir.join("samples.csv"), &csv::render(results))?;
    let plots = plots::render_all(&dir.join("plots"), results)?;
    write_text(&dir.join("report.md"), &markdown::render(results, &plots))
}

/// Human duration from nanoseconds with three significant digits.
pub fn fmt_ns(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

/// A byte count in binary units (metrics named `*_bytes`).
pub fn fmt_bytes(b: f64) -> String {
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// A metric value in its unit: names ending in `_bytes` are bytes, others plain numbers.
pub fn fmt_metric(name: &str, v: f64) -> String {
    if name.ends_with("_bytes") {
        fmt_bytes(v)
    } else {
        format!("{v:.1}")
    }
}
