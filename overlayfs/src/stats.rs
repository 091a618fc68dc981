//! Request counters: one relaxed atomic per request kind (the bench reads them).

use std::sync::atomic::{AtomicU64, Ordering};

/// Request kinds counted.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum Op {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Statfs,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Access,
    Create,
    Fallocate,
    Lseek,
    CopyFileRange,
}

const N: usize = Op::CopyFileRange as usize + 1;

/// Live counters.
#[derive(Debug, Default)]
pub struct Counters {
    c: [AtomicU64; N],
}

impl Counters {
    /// Count one request.
    pub fn count(&self, op: Op) {
        self.c[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, op: Op) -> u64 {
        self.c[op as usize].load(Ordering::Relaxed)
    }

    /// A snapshot.
    pub fn snapshot(&self) -> OpStats {
        OpStats {
            lookup: self.get(Op::Lookup),
            forget: self.get(Op::Forget),
            getattr: self.get(Op::Getattr),
            setattr: self.get(Op::Setattr),
            readlink: self.get(Op::Readlink),
            mknod: self.get(Op::Mknod),
            mkdir: self.get(Op::Mkdir),
            unlink: self.get(Op::Unlink),
            rmdir: self.get(Op::Rmdir),
            symlink: self.get(Op::Symlink),
            rename: self.get(Op::Rename),
            link: self.get(Op::Link),
            open: self.get(Op::Open),
            read: self.get(Op::Read),
            write: self.get(Op::Write),
            flush: self.get(Op::Flush),
            release: self.get(Op::Release),
            fsync: self.get(Op::Fsync),
            opendir: self.get(Op::Opendir),
            readdir: self.get(Op::Readdir),
            readdirplus: self.get(Op::Readdirplus),
            releasedir: self.get(Op::Releasedir),
            statfs: self.get(Op::Statfs),
            setxattr: self.get(Op::Setxattr),
            getxattr: self.get(Op::Getxattr),
            listxattr: self.get(Op::Listxattr),
            removexattr: self.get(Op::Removexattr),
            access: self.get(Op::Access),
            create: self.get(Op::Create),
            fallocate: self.get(Op::Fallocate),
            lseek: self.get(Op::Lseek),
            copy_file_range: self.get(Op::CopyFileRange),
        }
    }
}

/// How many requests of each kind a server answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct OpStats {
    pub lookup: u64,
    pub forget: u64,
    pub getattr: u64,
    pub setattr: u64,
    pub readlink: u64,
    pub mknod: u64,
    pub mkdir: u64,
    pub unlink: u64,
    pub rmdir: u64,
    pub symlink: u64,
    pub rename: u64,
    pub link: u64,
    pub open: u64,
    pub read: u64,
    pub write: u64,
    pub flush: u64,
    pub release: u64,
    pub fsync: u64,
    pub opendir: u64,
    pub readdir: u64,
    pub readdirplus: u64,
    pub releasedir: u64,
    pub statfs: u64,
    pub setxattr: u64,
    pub getxattr: u64,
    pub listxattr: u64,
    pub removexattr: u64,
    pub access: u64,
    pub create: u64,
    pub fallocate: u64,
    pub lseek: u64,
    pub copy_file_range: u64,
}

impl OpStats {
    /// All requests.
    pub fn total(&self) -> u64 {
        let s = self;
        s.lookup
            + s.forget
            + s.getattr
            + s.setattr
            + s.readlink
            + s.mknod
            + s.mkdir
            + s.unlink
            + s.rmdir
            + s.symlink
            + s.rename
            + s.link
            + s.open
            + s.read
            + s.write
            + s.flush
            + s.release
            + s.fsync
            + s.opendir
            + s.readdir
            + s.readdirplus
            + s.releasedir
            + s.statfs
            + s.setxattr
            + s.getxattr
            + s.listxattr
            + s.removexattr
            + s.access
            + s.create
            + s.fallocate
            + s.lseek
            + s.copy_file_range
    }
}
