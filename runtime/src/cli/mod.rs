//! One module per `strata` subcommand; each turns parsed arguments into library calls.

pub mod exec;
pub mod gc;
pub mod image;
pub mod info;
pub mod kill;
pub mod log;
pub mod oci;
pub mod ps;
pub mod rm;
pub mod run;
pub mod stats;

use std::path::PathBuf;

use strata_runtime::state::StateRoot;

/// Exit status for strata's own failures (as `docker run` uses 125), distinct from a container's status.
pub const EXIT_STRATA_ERROR: u8 = 125;

/// Bytes in binary units, as `docker stats` prints them ("12.3MiB").
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// A text table: columns as wide as their widest cell (names and statuses vary in length), two spaces
/// apart; the columns named in `right` right-aligned (numbers), the last one never padded.
pub fn table<const N: usize>(header: [&str; N], right: &[&str], rows: &[[String; N]]) -> String {
    let mut width = header.map(str::len);
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(cell.chars().count());
            let last = i + 1 == N;
            if right.contains(&header[i]) {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if !last {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                out.push_str("  ");
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header);
    for row in rows {
        out.push_str(&line(std::array::from_fn(|i| row[i].as_str())));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_columns_fit_their_widest_cell() {
        let rows = [
            [
                "a-long-container-name".to_string(),
                "7".into(),
                "exited(137)".into(),
            ],
            ["b".to_string(), "12345".into(), "running".into()],
        ];
        assert_eq!(
            super::table(["ID", "PID", "STATUS"], &["PID"], &rows),
            "ID                       PID  STATUS\n\
             a-long-container-name      7  exited(137)\n\
             b                      12345  running\n"
        );
    }

    #[test]
    fn human_bytes() {
        assert_eq!(super::human_bytes(512), "512B");
        assert_eq!(super::human_bytes(1536), "1.5KiB");
        assert_eq!(super::human_bytes(64 << 20), "64.0MiB");
    }
}

/// Options every container command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct StateArgs {
    /// Where container state lives (the OCI runtimes' --root; --state-dir is an alias).
    #[arg(
        long = "root",
        visible_alias = "state-dir",
        global = true,
        env = "STRATA_STATE",
        default_value = "/run/strata"
    )]
    pub state_dir: PathBuf,
}

impl StateArgs {
    pub fn root(&self) -> StateRoot {
        StateRoot::new(self.state_dir.clone())
    }
}
