use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata_bench::cases::{self, Suite};
use strata_bench::recorder::{self, SuiteOptions};
use strata_bench::report::{self, json::Results};
use strata_bench::stats::DecisionRule;

/// strata-bench: container startup and kernel building-block benchmarks.
#[derive(Parser)]
#[command(name = "strata-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a suite and write a results folder.
    Run {
        #[arg(long, value_enum, default_value = "standard")]
        suite: Suite,
        /// Only groups or cases whose "family/group/subject" starts with PATTERN (comma-separated
        /// alternatives: startup/true/floor,startup/true/strata-kernel).
        #[arg(long, value_name = "PATTERN")]
        only: Option<String>,
        /// Results folder (default results/<date>-<host>-<suite>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Samples per case (overrides the suite's default).
        #[arg(long, value_name = "N")]
        samples: Option<usize>,
    },
    /// Re-render samples.csv, report.md and the plots of a results folder from its results.json.
    Report { dir: PathBuf },
    /// Compare two results folders; exits 1 when any metric regressed.
    Compare {
        base: PathBuf,
        new: PathBuf,
        /// Minimum effect size (fraction of the base median) before a change counts.
        #[arg(long, default_value_t = DecisionRule::default().min_effect)]
        min_effect: f64,
        /// Significance level of the permutation test.
        #[arg(long, default_value_t = DecisionRule::default().alpha)]
        alpha: f64,
    },
    /// List the groups and subjects of a suite.
    List {
        #[arg(long, value_enum, default_value = "full")]
        suite: Suite,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "strata-bench: {}",
                strata_overlayfs::errline::one_line(e.as_ref())
            );
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run {
            suite,
            only,
            out,
            samples,
        } => {
            let opts = SuiteOptions {
                suite,
                only,
                samples,
                command_line: std::env::args().collect(),
            };
            let results = recorder::run_suite(&opts)?;
            let dir = out.unwrap_or_else(|| recorder::default_out_dir(&results));
            report::write_all(&dir, &results)
                .with_context(|| format!("writing {}", dir.display()))?;
            if let Some(g) = results.groups.iter().find(|g| g.id() == "startup/true") {
                println!("{}", report::markdown::startup_section(g));
            }
            println!("{}", dir.join("report.md").display());
        }
        Cmd::Report { dir } => {
            let results = Results::read(&dir)?;
            report::render(&dir, &results)?;
            println!("{}", dir.join("report.md").display());
        }
        Cmd::Compare {
            base,
            new,
            min_effect,
            alpha,
        } => {
            let cmp = strata_bench::compare::compare_dirs(
                &base,
                &new,
                DecisionRule { alpha, min_effect },
            )?;
            print!(
                "{}",
                strata_bench::compare::render_markdown(&base, &new, &cmp)
            );
            if cmp.regressed() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::List { suite } => {
            for g in cases::groups(suite) {
                let subjects: Vec<String> = g.cases.iter().map(|c| c.subject()).collect();
                println!("{}: {}", g.id(), subjects.join(" "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
