//! `strata-bigtree:latest`: a synthetic, Debian-minbase-like tree for filesystem benchmarks.
//!
//! layer 1  ~6,300 entries shaped like /usr, /etc and /var/lib/dpkg: wide dirs (usr/bin ~800 entries),
//!          a 16-level deep chain, mixed sizes (mostly small, a few MiB-sized), symlinks, hard links
//! layer 2  an update: ~600 files replaced, ~1,500 man pages added, 150 files deleted (`.wh.`),
//!          10 doc dirs made opaque with new content
//! layer 3  srv/wide with 10,000 entries (the readdir case) and opt/app with ~1,000 more files
//!
//! No file is large: the bench makes its own big file, so the archive stays around 100 MB.

use super::{BuildOptions, BuiltImage, EPOCH, ImageSpec, LayerBuilder, Rng, write_image};
use crate::image::ImageError;
use serde_json::json;
use std::path::Path;

pub const NAME: &str = "strata-bigtree:latest";
/// Entries in srv/wide.
pub const WIDE_DIR_ENTRIES: usize = 10_000;
const DAY: u64 = 86_400;
const PACKAGES: usize = 300;

/// Writes the bigtree image.
pub fn build_bigtree(out: &Path, opts: &BuildOptions) -> Result<BuiltImage, ImageError> {
    write_image(bigtree_spec()?, out, opts)
}

/// A file size drawn from a skewed distribution: most files small, a few large, as in a real system.
fn size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=749 => rng.below(4096) as usize,
        750..=969 => 4096 + rng.below(28 * 1024) as usize,
        970..=996 => 32 * 1024 + rng.below(224 * 1024) as usize,
        _ => 256 * 1024 + rng.below(1792 * 1024) as usize,
    }
}

/// Content of the given size; half the files text, half binary.
fn content(rng: &mut Rng) -> Vec<u8> {
    let n = size(rng);
    if rng.below(2) == 0 {
        rng.text(n)
    } else {
        rng.bytes(n)
    }
}

fn bigtree_spec() -> Result<ImageSpec, ImageError> {
    let mut rng = Rng::new(0x0042_4947_5452_4545);
    let mut replaced = Vec::new();
    let mut deleted = Vec::new();

    // Layer 1: the base system.
    let mut l1 = LayerBuilder::new(EPOCH);
    l1.dirs("usr/bin");
    l1.dirs("usr/sbin");
    l1.dirs("etc");
    l1.dirs("var/lib/dpkg/info");
    l1.dir("tmp", 0o1777);
    l1.dir("root", 0o700);
    // Enough of busybox that the image also works as a container rootfs (`sh`, `find`, `ls`, …).
    l1.dirs("bin");
    let busybox = std::fs::read("/bin/busybox").map_err(|e| {
        ImageError::TestImage(format!("read /bin/busybox (package busybox-static): {e}"))
    })?;
    l1.file("bin/busybox", 0o755, busybox);
    for applet in ["cat", "du", "find", "ls", "sh", "stat", "true", "wc"] {
        l1.symlink(&format!("bin/{applet}"), "busybox");
    }
    for i in 0..800 {
        let p = format!("usr/bin/tool-{i:04}");
        l1.file(&p, 0o755, content(&mut rng));
        if i % 40 == 0 {
            replaced.push(p);
        }
    }
    for i in 0..100 {
        l1.symlink(
            &format!("usr/bin/alias-{i:03}"),
            &format!("tool-{:04}", i * 7),
        );
    }
    for i in 0..50 {
        // "usr/bin/tool-…" sorts before "usr/bin/z…", so the target is written first.
        l1.hardlink(
            &format!("usr/bin/zlink-{i:02}"),
            &format!("usr/bin/tool-{:04}", i * 3),
        );
    }
    for i in 0..120 {
        l1.file(&format!("usr/sbin/daemon-{i:03}"), 0o750, content(&mut rng));
    }
    for i in 0..50 {
        // Layer 2 leaves usr/sbin alone, so these links stay links in the merged view.
        l1.hardlink(
            &format!("usr/sbin/zlink-{i:02}"),
            &format!("usr/sbin/daemon-{:03}", i * 2),
        );
    }
    for d in 0..40 {
        let dir = format!("usr/lib/x86_64-linux-gnu/lib{d:02}");
        l1.dirs(&dir);
        for f in 0..30 {
            let so = format!("{dir}/libpart{f:02}.so.1.0");
            l1.file(&so, 0o644, content(&mut rng));
            l1.symlink(
                &format!("{dir}/libpart{f:02}.so"),
                &format!("libpart{f:02}.so.1.0"),
            );
            if f % 10 == 3 {
                deleted.push((dir.clone(), format!("libpart{f:02}.so.1.0")));
            }
        }
    }
    for p in 0..PACKAGES {
        let dir = format!("usr/share/doc/pkg-{p:03}");
        l1.dirs(&dir);
        for (name, n) in [
            ("copyright", 1200),
            ("changelog.Debian", 6000),
            ("README", 900),
            ("NEWS", 400),
        ] {
            let len = n + rng.below(n as u64) as usize;
            l1.file(&format!("{dir}/{name}"), 0o644, rng.text(len));
        }
        l1.file(
            &format!("var/lib/dpkg/info/pkg-{p:03}.list"),
            0o644,
            rng.text_sized(200, 3000),
        );
        l1.file(
            &format!("var/lib/dpkg/info/pkg-{p:03}.md5sums"),
            0o644,
            rng.text_sized(100, 2000),
        );
        if p % 30 == 0 {
            replaced.push(format!("var/lib/dpkg/info/pkg-{p:03}.list"));
        }
    }
    for lang in 0..100 {
        let dir = format!("usr/share/locale/l{lang:02}/LC_MESSAGES");
        l1.dirs(&dir);
        for m in 0..5 {
            l1.file(&format!("{dir}/domain{m}.mo"), 0o644, content(&mut rng));
        }
    }
    for i in 0..200 {
        let p = format!("etc/conf-{:02}/file-{i:03}.conf", i % 20);
        l1.dirs(&format!("etc/conf-{:02}", i % 20));
        l1.file(&p, 0o644, rng.text_sized(100, 2000));
        if i % 8 == 0 {
            replaced.push(p);
        }
    }
    let mut deep = String::from("usr/include/deep");
    for level in 0..16 {
        deep.push_str(&format!("/level-{level:02}"));
        l1.dirs(&deep);
        for f in 0..4 {
            l1.file(
                &format!("{deep}/header-{f}.h"),
                0o644,
                rng.text_sized(500, 5000),
            );
        }
    }
    l1.symlink("usr/include/shortcut", "deep/level-00/level-01/level-02");

    // Layer 2: an update.
    let mut l2 = LayerBuilder::new(EPOCH + DAY);
    for p in replaced.iter().chain(&["usr/bin/tool-0001".to_string()]) {
        let parent = Path::new(p).parent().and_then(|d| d.to_str()).unwrap_or("");
        l2.dirs(parent);
        let mode = if p.starts_with("usr/bin/") {
            0o755
        } else {
            0o644
        };
        l2.file(p, mode, content(&mut rng));
    }
    for i in 0..600 {
        let p = format!("usr/bin/tool-{:04}", (i * 13) % 800);
        l2.file(&p, 0o755, content(&mut rng));
    }
    for (dir, name) in &deleted {
        l2.dirs(dir);
        l2.whiteout(dir, name);
    }
    for sec in 1..=8 {
        let dir = format!("usr/share/man/man{sec}");
        l2.dirs(&dir);
        for i in 0..190 {
            l2.file(
                &format!("{dir}/page-{i:03}.{sec}.gz"),
                0o644,
                rng.bytes_sized(200, 6000),
            );
        }
    }
    for p in (0..PACKAGES).step_by(30) {
        let dir = format!("usr/share/doc/pkg-{p:03}");
        l2.dirs(&dir);
        l2.opaque(&dir);
        l2.file(&format!("{dir}/copyright"), 0o644, rng.text(1500));
        l2.file(&format!("{dir}/README.new"), 0o644, rng.text(700));
    }

    // Layer 3: the wide directory and an application tree.
    let mut l3 = LayerBuilder::new(EPOCH + 2 * DAY);
    l3.dirs("srv/wide");
    for i in 0..WIDE_DIR_ENTRIES {
        l3.file(
            &format!("srv/wide/entry-{i:05}"),
            0o644,
            rng.text_sized(0, 128),
        );
    }
    l3.dirs("opt/app");
    for m in 0..25 {
        let dir = format!(
            "opt/app/module-{m:02}/src/{}",
            if m % 2 == 0 { "core" } else { "util" }
        );
        l3.dirs(&dir);
        for f in 0..40 {
            l3.file(&format!("{dir}/unit-{f:02}.rs"), 0o644, content(&mut rng));
        }
        l3.symlink(&format!("opt/app/module-{m:02}/current"), "src");
        l3.hardlink(
            &format!("opt/app/module-{m:02}/src/zz-first-unit"),
            &format!("{dir}/unit-00.rs"),
        );
    }
    l3.dirs("usr/local/bin");
    l3.symlink("usr/local/bin/app", "/opt/app/module-00/current");

    let entries = (l1.len() + l2.len() + l3.len()) as u64;
    Ok(ImageSpec {
        name: NAME.to_string(),
        layers: vec![l1.finish()?, l2.finish()?, l3.finish()?],
        layer_comments: vec![
            "strata image build-test bigtree: layer 1 (base system)".into(),
            "strata image build-test bigtree: layer 2 (update: replacements, deletions, opaque dirs)".into(),
            "strata image build-test bigtree: layer 3 (srv/wide with 10,000 entries, opt/app)".into(),
        ],
        config: json!({
            "Cmd": ["/bin/sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/srv",
        }),
        entries,
    })
}
