//! `strata-busybox:latest`: three small layers that exercise every kind of entry and both whiteout forms.
//!
//! layer 1  busybox-static with a hard link (/bin, /sbin) or symlink (/usr) per applet, /etc/passwd, group,
//!          hosts, motd, os-release, a non-root user with a setuid file in its home, a fifo, an xattr file,
//!          /tmp 1777, /root 0700
//! layer 2  /srv/data (a few files, an 8 MiB pseudo-random file and a hard link to it, a cache dir),
//!          replaces /etc/os-release
//! layer 3  deletes /etc/motd (`.wh.motd`), makes /srv/data/cache opaque with new content

use super::{BuildOptions, BuiltImage, EPOCH, ImageSpec, LayerBuilder, Rng, write_image};
use crate::image::ImageError;
use serde_json::json;
use std::path::Path;

pub const NAME: &str = "strata-busybox:latest";
const BUSYBOX: &str = "/bin/busybox";
const DAY: u64 = 86_400;
/// Size of /srv/data/big.bin.
pub const BIG_FILE_SIZE: usize = 8 << 20;

/// Writes the busybox image as a `docker save` archive (what `docker load` and scripts/make-images use).
pub fn build_busybox(out: &Path) -> Result<BuiltImage, ImageError> {
    build_busybox_with(out, &BuildOptions::default())
}

/// Writes the busybox image in the given format.
pub fn build_busybox_with(out: &Path, opts: &BuildOptions) -> Result<BuiltImage, ImageError> {
    let spec = busybox_spec()?;
    write_image(spec, out, opts)
}

fn applets() -> Result<Vec<String>, ImageError> {
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .map_err(|e| ImageError::TestImage(format!("{BUSYBOX} (package busybox-static): {e}")))?;
    if !out.status.success() {
        return Err(ImageError::TestImage(format!(
            "{BUSYBOX} --list-full failed: {}",
            out.status
        )));
    }
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != "bin/busybox")
        .collect();
    list.sort();
    list.dedup();
    Ok(list)
}

fn busybox_spec() -> Result<ImageSpec, ImageError> {
    let binary = std::fs::read(BUSYBOX).map_err(|e| {
        ImageError::TestImage(format!("read {BUSYBOX} (package busybox-static): {e}"))
    })?;

    // Layer 1: the base system.
    let mut l1 = LayerBuilder::new(EPOCH);
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "home", "var", "var/log", "run",
    ] {
        l1.dir(d, 0o755);
    }
    for d in ["dev", "proc", "sys", "usr/share", "usr/share/strata"] {
        l1.dir(d, 0o755);
    }
    l1.dir("tmp", 0o1777);
    l1.dir("root", 0o700);
    l1.file("bin/busybox", 0o755, binary);
    for applet in applets()? {
        // /bin and /sbin get hard links (as Docker's busybox image does), the rest absolute symlinks.
        if applet.starts_with("bin/") || applet.starts_with("sbin/") {
            if applet.as_str() > "bin/busybox" {
                l1.hardlink(&applet, "bin/busybox");
            } else {
                l1.symlink(&applet, "busybox");
            }
        } else {
            l1.dirs(
                Path::new(&applet)
                    .parent()
                    .and_then(|p| p.to_str())
                    .unwrap_or(""),
            );
            l1.symlink(&applet, "/bin/busybox");
        }
    }
    l1.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n".to_vec(),
    );
    l1.file(
        "etc/group",
        0o644,
        b"root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n".to_vec(),
    );
    l1.file(
        "etc/shadow",
        0o640,
        b"root:*:19723:0:99999:7:::\nuser:*:19723:0:99999:7:::\n".to_vec(),
    );
    l1.file(
        "etc/hosts",
        0o644,
        b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_vec(),
    );
    l1.file("etc/motd", 0o644, b"Welcome to strata-busybox.\n".to_vec());
    l1.file(
        "etc/os-release",
        0o644,
        b"NAME=\"strata busybox\"\nVERSION_ID=1\n".to_vec(),
    );
    l1.file(
        "etc/profile",
        0o644,
        b"export PS1='\\u@\\h:\\w\\$ '\n".to_vec(),
    );
    l1.symlink("etc/mtab", "/proc/mounts");
    l1.dir_owned("home/user", 0o755, 1000, 1000);
    l1.file_owned(
        "home/user/.profile",
        0o644,
        1000,
        1000,
        b"export EDITOR=vi\n".to_vec(),
    );
    l1.file_owned(
        "home/user/setuid-tool",
        0o4755,
        1000,
        1000,
        b"#!/bin/sh\nid -u\n".to_vec(),
    );
    l1.fifo("run/strata.fifo", 0o600);
    l1.file(
        "usr/share/strata/xattr.txt",
        0o644,
        b"this file carries a user xattr\n".to_vec(),
    );
    l1.xattr(
        "usr/share/strata/xattr.txt",
        "user.strata.comment",
        b"hello from layer 1",
    );

    // Layer 2: data, and a replaced base file.
    let mut rng = Rng::new(0x5742_4154_4131);
    let mut l2 = LayerBuilder::new(EPOCH + DAY);
    for d in [
        "etc",
        "srv",
        "srv/data",
        "srv/data/nested",
        "srv/data/cache",
    ] {
        l2.dir(d, 0o755);
    }
    l2.file(
        "etc/os-release",
        0o644,
        b"NAME=\"strata busybox\"\nVERSION_ID=2\n".to_vec(),
    );
    l2.file(
        "srv/data/README",
        0o644,
        b"Test data for strata.\n".to_vec(),
    );
    l2.file(
        "srv/data/numbers.csv",
        0o644,
        (0..200)
            .map(|i| format!("{i},{}\n", i * i))
            .collect::<String>()
            .into_bytes(),
    );
    l2.file("srv/data/nested/deep.txt", 0o600, rng.text(3000));
    l2.file("srv/data/big.bin", 0o644, rng.bytes(BIG_FILE_SIZE));
    l2.hardlink("srv/data/big.link", "srv/data/big.bin");
    l2.file(
        "srv/data/cache/old-1",
        0o644,
        b"stale cache entry 1\n".to_vec(),
    );
    l2.file(
        "srv/data/cache/old-2",
        0o644,
        b"stale cache entry 2\n".to_vec(),
    );
    l2.symlink("srv/data/latest", "numbers.csv");

    // Layer 3: a deletion and an opaque directory.
    let mut l3 = LayerBuilder::new(EPOCH + 2 * DAY);
    for d in ["etc", "srv", "srv/data", "srv/data/cache"] {
        l3.dir(d, 0o755);
    }
    l3.whiteout("etc", "motd");
    l3.opaque("srv/data/cache");
    l3.file(
        "srv/data/cache/fresh",
        0o644,
        b"fresh cache entry\n".to_vec(),
    );

    let entries = (l1.len() + l2.len() + l3.len()) as u64;
    Ok(ImageSpec {
        name: NAME.to_string(),
        layers: vec![l1.finish()?, l2.finish()?, l3.finish()?],
        layer_comments: vec![
            "strata image build-test busybox: layer 1 (busybox, /etc, users)".into(),
            "strata image build-test busybox: layer 2 (/srv/data, new os-release)".into(),
            "strata image build-test busybox: layer 3 (delete /etc/motd, opaque /srv/data/cache)"
                .into(),
        ],
        config: json!({
            "Cmd": ["/bin/sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "STRATA_IMAGE=busybox"],
            "WorkingDir": "/",
        }),
        entries,
    })
}
