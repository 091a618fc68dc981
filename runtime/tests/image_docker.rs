//! The "Done when": Docker, running the busybox archive, sees the same tree as a kernel overlay
//! mount of the layers strata imported from that archive — apart from what Docker itself adds.

mod image_support;

use image_support::{OverlayMount, busybox, store};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Paths Docker creates or mounts over in every container.
fn docker_adds(path: &str) -> bool {
    matches!(
        path,
        "/.dockerenv" | "/etc/hosts" | "/etc/hostname" | "/etc/resolv.conf"
    ) || ["/dev", "/proc", "/sys"]
        .iter()
        .any(|m| path == *m || path.starts_with(&format!("{m}/")))
}

/// Paths whose metadata Docker changes without changing the name: the root and /etc get mount points
/// (new mtime), and Docker re-creates the /etc/mtab symlink.
fn docker_touches(path: &str) -> bool {
    matches!(path, "/" | "/etc" | "/etc/mtab") || docker_adds(path)
}

const FIND: &str = "find / -xdev | sort";
const STAT: &str = "find / -xdev -exec stat -c '%n|%f|%u|%g|%s|%h|%Y' {} + | sort";

#[test]
fn docker_and_kernel_overlay_of_the_imported_layers_see_the_same_tree() {
    let info = Command::new("docker").arg("info").output();
    match &info {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "Docker is required: `docker info` failed ({}): {} — start the daemon with scripts/docker-up",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("Docker is required: cannot run `docker info`: {e} (install docker.io)"),
    }

    let (dir, store) = store();
    let (archive, built) = busybox(dir.path());
    let loaded = run(Command::new("docker").arg("load").arg("-i").arg(&archive));
    assert!(
        loaded.contains("strata-busybox:latest"),
        "docker load said: {loaded}"
    );
    // Run by id, so a concurrent re-tag by someone else cannot change which image this test sees.
    let id = run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        built.id.as_str(),
    ]));
    assert_eq!(
        id.trim(),
        built.id.as_str(),
        "Docker's image id differs from the archive's config digest"
    );

    let in_docker = |script: &str| {
        run(Command::new("docker").args([
            "run",
            "--rm",
            "--network",
            "none",
            built.id.as_str(),
            "sh",
            "-c",
            script,
        ]))
    };
    let docker_names = in_docker(FIND);
    let docker_stat = in_docker(STAT);

    let rec = store.import(&archive, None).unwrap();
    let m = OverlayMount::new(&store.lower_dirs_top_first(&rec));
    // The same busybox `find` and `stat`, run inside the overlay, so both sides print paths alike.
    let in_overlay = |script: &str| {
        run(Command::new("chroot")
            .arg(m.path())
            .args(["/bin/busybox", "sh", "-c", script]))
    };
    let overlay_names = in_overlay(FIND);
    let overlay_stat = in_overlay(STAT);

    let d: BTreeSet<&str> = docker_names.lines().collect();
    let o: BTreeSet<&str> = overlay_names.lines().collect();
    assert!(
        o.len() > 300,
        "overlay tree is suspiciously small: {} entries",
        o.len()
    );
    let only_docker: Vec<_> = d.difference(&o).filter(|p| !docker_adds(p)).collect();
    let only_overlay: Vec<_> = o.difference(&d).filter(|p| !docker_adds(p)).collect();
    assert!(
        only_docker.is_empty() && only_overlay.is_empty(),
        "trees differ: only in Docker {only_docker:?}, only in the overlay {only_overlay:?}"
    );
    for must in [
        "/srv/data/cache/fresh",
        "/bin/busybox",
        "/home/user/setuid-tool",
    ] {
        assert!(o.contains(must), "{must} missing");
    }
    for gone in [
        "/etc/motd",
        "/srv/data/cache/old-1",
        "/etc/.wh.motd",
        "/srv/data/cache/.wh..wh..opq",
    ] {
        assert!(!o.contains(gone) && !d.contains(gone), "{gone} visible");
    }

    // Beyond names: type, mode, owner, size, link count and mtime agree wherever Docker does not touch.
    let parse = |s: &str| -> BTreeMap<String, String> {
        s.lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(p, _)| !docker_touches(p))
            .map(|(p, rest)| (p.to_string(), rest.to_string()))
            .collect()
    };
    let (ds, os) = (parse(&docker_stat), parse(&overlay_stat));
    let differing: Vec<_> = ds
        .iter()
        .filter(|(p, v)| os.get(*p) != Some(v))
        .map(|(p, v)| format!("{p}: docker {v} overlay {:?}", os.get(p)))
        .collect();
    assert!(differing.is_empty(), "metadata differs: {differing:#?}");
    assert_eq!(ds.len(), os.len());
}

#[test]
fn docker_save_output_imports_with_the_same_layers() {
    let info = Command::new("docker").arg("info").output();
    assert!(
        info.as_ref().is_ok_and(|o| o.status.success()),
        "Docker is required: `docker info` failed — start the daemon with scripts/docker-up"
    );
    let (dir, store) = store();
    let (archive, built) = busybox(dir.path());
    run(Command::new("docker").arg("load").arg("-i").arg(&archive));
    // Saved by id, Docker's archive names no image (RepoTags null), so --name is needed.
    let saved = dir.path().join("saved.tar");
    run(Command::new("docker")
        .args(["save", "-o"])
        .arg(&saved)
        .arg(built.id.as_str()));
    let err = store.import(&saved, None).unwrap_err().to_string();
    assert!(err.contains("--name"), "{err}");
    let rec = store.import(&saved, Some("docker-saved")).unwrap();
    assert_eq!(rec.id, built.id);
    assert_eq!(
        rec.layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>(),
        built.diff_ids
    );
    assert_eq!(rec.config.cmd, vec!["/bin/sh"]);
}
