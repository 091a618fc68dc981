//! The default seccomp filter as a BPF program searched in a balanced tree.
//!
//! seccompiler lays a filter out as one linear chain, and the kernel, when it installs a filter, runs
//! it for every syscall number of the architecture to fill its per-syscall action cache: a chain of
//! ~300 instructions took ~250 µs of every container's start here, for a deny-list of ~50 numbers.
//! A search tree reaches any number in about log2(50) comparisons.

use std::collections::BTreeMap;

use seccompiler::sock_filter;

#[cfg(target_arch = "x86_64")]
pub(super) const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub(super) const AUDIT_ARCH: u32 = 0xC000_00B7;
/// x86_64's x32 ABI numbers have this bit set; the filter below knows only the native numbers.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`: nr, arch, then instruction_pointer and args (little-endian, so
/// the low word of args[0] comes first).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

/// What the filter answers for a listed syscall number (any other is allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Refused with this errno.
    Errno(u32),
    /// Refused with this errno when the low word of the first argument has any bit of `mask` (clone's
    /// namespace flags), allowed otherwise.
    ErrnoIfArg0Any { mask: u32, errno: u32 },
}

#[derive(Clone, Copy)]
enum To {
    Next,
    Label(usize),
}

struct Asm {
    ins: Vec<(u16, u32, To, To)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.ins.len());
    }
    fn stmt(&mut self, code: u32, k: u32) {
        self.ins.push((code as u16, k, To::Next, To::Next));
    }
    fn jump(&mut self, op: u32, k: u32, jt: To, jf: To) {
        self.ins
            .push(((libc::BPF_JMP | op | libc::BPF_K) as u16, k, jt, jf));
    }
    fn load(&mut self, offset: u32) {
        self.stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    }
    fn ret(&mut self, action: u32) {
        self.stmt(libc::BPF_RET | libc::BPF_K, action);
    }

    /// Resolves the labels; BPF's conditional jumps go forward at most 255 instructions.
    fn finish(self) -> Result<Vec<sock_filter>, String> {
        let offset = |at: usize, to: To| -> Result<u8, String> {
            match to {
                To::Next => Ok(0),
                To::Label(l) => {
                    let target = self.labels[l].ok_or("an unbound label")?;
                    target
                        .checked_sub(at + 1)
                        .and_then(|d| u8::try_from(d).ok())
                        .ok_or_else(|| format!("a jump from {at} to {target} is out of reach"))
                }
            }
        };
        self.ins
            .iter()
            .enumerate()
            .map(|(at, &(code, k, jt, jf))| {
                Ok(sock_filter {
                    code,
                    jt: offset(at, jt)?,
                    jf: offset(at, jf)?,
                    k,
                })
            })
            .collect()
    }
}

fn errno_action(errno: u32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno & libc::SECCOMP_RET_DATA)
}

/// A filter that answers each syscall of `listed` with its verdict and allows every other; a foreign
/// architecture kills the process (as seccompiler's filters do), and on x86_64 an x32-ABI call gets
/// ENOSYS (the listed numbers are native ones).
pub fn compile(listed: &BTreeMap<u32, Verdict>) -> Result<Vec<sock_filter>, String> {
    let mut a = Asm {
        ins: Vec::new(),
        labels: Vec::new(),
    };
    let (allow, kill) = (a.label(), a.label());
    // One return per distinct errno.
    let mut errno_labels: BTreeMap<u32, usize> = BTreeMap::new();
    let errnos = listed.values().map(|v| match *v {
        Verdict::Errno(e) | Verdict::ErrnoIfArg0Any { errno: e, .. } => e,
    });
    for e in errnos.chain([libc::ENOSYS as u32]) {
        errno_labels.entry(e).or_insert_with(|| a.label());
    }
    // Where each listed number goes: its errno's return, or a block of its own for an argument check.
    let mut blocks = Vec::new();
    let keys: Vec<(u32, To)> = listed
        .iter()
        .map(|(&nr, v)| match *v {
            Verdict::Errno(e) => (nr, To::Label(errno_labels[&e])),
            Verdict::ErrnoIfArg0Any { mask, errno } => {
                let l = a.label();
                blocks.push((l, mask, errno_labels[&errno]));
                (nr, To::Label(l))
            }
        })
        .collect();

    a.load(ARCH);
    a.jump(libc::BPF_JEQ, AUDIT_ARCH, To::Next, To::Label(kill));
    a.load(NR);
    #[cfg(target_arch = "x86_64")]
    a.jump(
        libc::BPF_JGE,
        X32_SYSCALL_BIT,
        To::Label(errno_labels[&(libc::ENOSYS as u32)]),
        To::Next,
    );
    search(&mut a, &keys, allow);
    for (l, mask, deny) in blocks {
        a.bind(l);
        a.load(ARG0_LOW);
        a.jump(libc::BPF_JSET, mask, To::Label(deny), To::Label(allow));
    }
    a.bind(allow);
    a.ret(libc::SECCOMP_RET_ALLOW);
    for (&e, &l) in &errno_labels {
        a.bind(l);
        a.ret(errno_action(e));
    }
    a.bind(kill);
    a.ret(libc::SECCOMP_RET_KILL_PROCESS);
    a.finish()
}

/// Binary search over the sorted `keys` (the accumulator holds the syscall number): each listed
/// number jumps to its target, any other to `allow`.
fn search(a: &mut Asm, keys: &[(u32, To)], allow: usize) {
    if keys.len() <= 3 {
        if keys.is_empty() {
            a.jump(libc::BPF_JEQ, 0, To::Label(allow), To::Label(allow));
        }
        for (i, &(nr, to)) in keys.iter().enumerate() {
            let miss = if i + 1 == keys.len() {
                To::Label(allow)
            } else {
                To::Next
            };
            a.jump(libc::BPF_JEQ, nr, to, miss);
        }
        return;
    }
    let mid = keys.len() / 2;
    let upper = a.label();
    a.jump(libc::BPF_JGE, keys[mid].0, To::Label(upper), To::Next);
    search(a, &keys[..mid], allow);
    a.bind(upper);
    search(a, &keys[mid..], allow);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Runs `prog` on (arch, nr, arg0) as the kernel's classic-BPF interpreter would (the subset this
    /// compiler and seccompiler's chains use).
    pub fn run(prog: &[sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = &prog[pc];
            let code = u32::from(i.code);
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    acc = match i.k {
                        NR => nr,
                        ARCH => arch,
                        ARG0_LOW => arg0 as u32,
                        k if k == ARG0_LOW + 4 => (arg0 >> 32) as u32,
                        k => panic!("load of offset {k}"),
                    };
                    pc += 1;
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => {
                    acc &= i.k;
                    pc += 1;
                }
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += 1 + i.k as usize,
                c if c & 0x07 == libc::BPF_JMP => {
                    let taken = match c & 0xf0 {
                        op if op == libc::BPF_JEQ => acc == i.k,
                        op if op == libc::BPF_JGE => acc >= i.k,
                        op if op == libc::BPF_JSET => acc & i.k != 0,
                        op => panic!("jump op {op:#x}"),
                    };
                    pc += 1 + usize::from(if taken { i.jt } else { i.jf });
                }
                c => panic!("instruction {c:#x}"),
            }
        }
    }

    #[test]
    fn every_number_gets_its_verdict() {
        let mut listed = BTreeMap::new();
        for nr in [
            3u32, 7, 8, 20, 21, 22, 40, 100, 101, 250, 300, 301, 302, 303, 430,
        ] {
            listed.insert(nr, Verdict::Errno(libc::EPERM as u32));
        }
        listed.insert(
            56,
            Verdict::ErrnoIfArg0Any {
                mask: 0x7000_0000,
                errno: 1,
            },
        );
        listed.insert(435, Verdict::Errno(libc::ENOSYS as u32));
        let prog = compile(&listed).unwrap();
        let perm = errno_action(libc::EPERM as u32);
        for nr in 0..1024u32 {
            let want = match listed.get(&nr) {
                Some(Verdict::Errno(e)) => errno_action(*e),
                Some(Verdict::ErrnoIfArg0Any { .. }) => libc::SECCOMP_RET_ALLOW,
                None => libc::SECCOMP_RET_ALLOW,
            };
            assert_eq!(run(&prog, AUDIT_ARCH, nr, 0), want, "nr {nr}");
        }
        assert_eq!(run(&prog, AUDIT_ARCH, 56, 0x1000_0000), perm);
        assert_eq!(
            run(&prog, AUDIT_ARCH, 56, 0x0001_0000),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&prog, 0x4000_0003, 3, 0),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            run(&prog, AUDIT_ARCH, X32_SYSCALL_BIT | 2, 0),
            errno_action(libc::ENOSYS as u32)
        );
        // About two instructions per listed number, not a chain walked for every syscall.
        assert!(
            prog.len() < 3 * listed.len() + 12,
            "{} instructions",
            prog.len()
        );
    }

    #[test]
    fn an_empty_list_allows_everything() {
        let prog = compile(&BTreeMap::new()).unwrap();
        assert_eq!(run(&prog, AUDIT_ARCH, 1, 0), libc::SECCOMP_RET_ALLOW);
    }
}
