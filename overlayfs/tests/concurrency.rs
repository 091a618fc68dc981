//! Concurrency: several processes reading, writing and listing the same directories at once; the
//! run ends (no deadlock) and the final tree equals the kernel's after the same workload.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use common::*;
use strata_overlayfs::WhiteoutForm;

/// Worker `w`: its own names in shared directories, plus reads and listings of everything.
fn worker(m: &Path, w: usize) {
    for i in 0..60 {
        let name = m.join(format!("merged/w{w}_{i}"));
        fs::write(&name, format!("{w}:{i}")).unwrap();
        let mut f = OpenOptions::new().append(true).open(&name).unwrap();
        f.write_all(b"+").unwrap();
        drop(f);
        let mut s = String::new();
        fs::File::open(m.join("etc/hosts"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert!(!s.is_empty());
        // Listing while others create and remove entries must never fail.
        for e in fs::read_dir(m.join("merged")).unwrap() {
            let _ = e.unwrap().metadata();
        }
        if i % 3 == 0 {
            fs::rename(&name, m.join(format!("names/w{w}_{i}"))).unwrap();
        }
        if i % 5 == 0 {
            let d = m.join(format!("x/d{w}_{i}"));
            fs::create_dir(&d).unwrap();
            fs::write(d.join("f"), b"f").unwrap();
            fs::remove_file(d.join("f")).unwrap();
            fs::remove_dir(&d).unwrap();
        }
    }
    // Everyone also copies up the same lower files at once.
    for f in ["merged/mid", "bin/sh", "etc/three"] {
        let _ = OpenOptions::new().write(true).open(m.join(f)).unwrap();
    }
}

fn workload(m: &Path) {
    std::thread::scope(|s| {
        for w in 0..6 {
            s.spawn(move || worker(m, w));
        }
    });
}

#[test]
fn concurrent_clients_end_like_the_kernel() {
    let mut p = Pair::new(WhiteoutForm::Kernel, true, build_layers);
    workload(p.k());
    workload(p.s());
    p.compare("after the concurrent workload");
    p.compare_uppers("after the concurrent workload");
}
