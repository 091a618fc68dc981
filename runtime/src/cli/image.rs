//! `strata image …`: import, ls, rm, inspect, build-test.

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use strata_runtime::image::testimages::{self, ArchiveFormat, BuildOptions};
use strata_runtime::image::{ImageRecord, Store};

/// `println!` that returns an error instead of panicking when stdout is gone (`strata image ls | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import a `docker save` or OCI image-layout archive (tar, optionally gzip'd; layers plain or gzip).
    Import {
        /// The archive, a directory holding an unpacked layout, or `-` for a tar on stdin
        /// (`docker save IMAGE | strata image import -`).
        archive: PathBuf,
        /// Name for the image (default: the name the archive gives it). A missing tag means `:latest`.
        #[arg(long)]
        name: Option<String>,
    },
    /// List images.
    Ls {
        /// Print JSON (an array of image records) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove images, and every layer no remaining image uses.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print an image's record as JSON, with its layer directories top-first under "lower_dirs".
    Inspect { name: String },
    /// Write one of the deterministic test images as an archive.
    BuildTest {
        kind: TestImage,
        /// The archive to write.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Docker)]
        format: Format,
        /// gzip the layers.
        #[arg(long)]
        gzip: bool,
        /// bigtree only: take the tree from DIR (e.g. a `debootstrap --variant=minbase` root) instead of
        /// generating it; it is split into layers (usr/share, var, the rest) plus a 10,000-entry dir.
        #[arg(long, value_name = "DIR")]
        from_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TestImage {
    Busybox,
    Bigtree,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `docker save` layout, loadable with `docker load`.
    Docker,
    /// OCI image layout.
    Oci,
}

pub fn run(root: &Path, cmd: ImageCommand) -> Result<()> {
    match run_command(root, cmd) {
        // The reader went away (`strata image ls | head -1`): nothing left to say, and not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn run_command(root: &Path, cmd: ImageCommand) -> Result<()> {
    if let ImageCommand::BuildTest {
        kind,
        out,
        format,
        gzip,
        from_dir,
    } = cmd
    {
        return build_test(kind, &out, format, gzip, from_dir.as_deref());
    }
    let store = Store::open(root).with_context(|| format!("open store {}", root.display()))?;
    match cmd {
        ImageCommand::Import { archive, name } => {
            // Archives are read with seeks, so stdin is spooled to a file first.
            let spooled = if archive.as_os_str() == "-" {
                let mut tmp = tempfile::Builder::new()
                    .prefix("strata-import-")
                    .tempfile()
                    .context("create a file to spool stdin into")?;
                std::io::copy(&mut std::io::stdin().lock(), &mut tmp)
                    .context("read the archive from stdin")?;
                Some(tmp.into_temp_path())
            } else {
                None
            };
            let path = spooled.as_deref().unwrap_or(&archive);
            let (rec, report) = store.import_with_report(path, name.as_deref())?;
            say!(
                "imported {} {} ({} layers: {} unpacked, {} already stored)",
                rec.name,
                rec.id,
                rec.layers.len(),
                report.extracted.len(),
                report.reused.len()
            )?;
        }
        ImageCommand::Ls { json } => {
            let images = store.list()?;
            if json {
                say!("{}", serde_json::to_string_pretty(&images)?)?;
            } else {
                print_table(&images)?;
            }
        }
        ImageCommand::Rm { names } => {
            for name in names {
                let rec = store.remove(&name)?;
                say!("removed {} {}", rec.name, rec.id)?;
            }
        }
        ImageCommand::Inspect { name } => {
            let rec = store.get(&name)?;
            let mut v = serde_json::to_value(&rec)?;
            v["lower_dirs"] = serde_json::to_value(store.lower_dirs_top_first(&rec))?;
            say!("{}", serde_json::to_string_pretty(&v)?)?;
        }
        ImageCommand::BuildTest { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn build_test(
    kind: TestImage,
    out: &Path,
    format: Format,
    gzip: bool,
    from_dir: Option<&Path>,
) -> Result<()> {
    let opts = BuildOptions {
        format: match format {
            Format::Docker => ArchiveFormat::DockerSave,
            Format::Oci => ArchiveFormat::Oci,
        },
        gzip,
    };
    let built = match (kind, from_dir) {
        (TestImage::Busybox, None) => testimages::build_busybox_with(out, &opts)?,
        (TestImage::Busybox, Some(_)) => anyhow::bail!("--from-dir applies to bigtree only"),
        (TestImage::Bigtree, None) => testimages::build_bigtree(out, &opts)?,
        (TestImage::Bigtree, Some(dir)) => testimages::build_bigtree_from_dir(dir, out, &opts)?,
    };
    say!(
        "wrote {}: {} {} ({} layers, {} entries)",
        out.display(),
        built.name,
        built.id,
        built.diff_ids.len(),
        built.entries
    )?;
    Ok(())
}

fn print_table(images: &[ImageRecord]) -> Result<()> {
    say!(
        "{:<32} {:<14} {:>6} {:>10}  CREATED",
        "NAME",
        "ID",
        "LAYERS",
        "SIZE"
    )?;
    for r in images {
        let size: u64 = r.layers.iter().map(|l| l.size).sum();
        say!(
            "{:<32} {:<14} {:>6} {:>10}  {}",
            r.name,
            r.id.short(),
            r.layers.len(),
            human(size),
            r.created.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
