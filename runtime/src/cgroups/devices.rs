//! Device access rules (OCI `linux.resources.devices`, Docker's default list): which device nodes a
//! container may open and create. A container keeps CAP_MKNOD by default, so without these rules it
//! could make a node for the host's disk and read it.
//!
//! v1 enforces them with the devices controller (`devices.deny` / `devices.allow`); v2 has no devices
//! controller but runs an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the cgroup
//! on every open and mknod of a device node. [`program`] compiles the rules into one, the way runc and
//! crun do: the rules are checked last to first and the first that matches decides, else the default.

use std::fmt;

use super::{CgroupError, Result};

/// Which device nodes a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    All,
    Char,
    Block,
}

/// Access bits, as in the kernel's `BPF_DEVCG_ACC_*` (and the letters m, r, w of v1).
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
const ALL_ACCESS: u8 = MKNOD | READ | WRITE;

/// One rule: allow or deny `access` to the devices of `kind` with `major:minor` (None = any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

impl DeviceRule {
    /// Parses v1 syntax: "c 1:3 rwm", "b *:* m", "a".
    pub fn parse(allow: bool, text: &str) -> Result<DeviceRule> {
        let bad = |reason: &str| CgroupError::InvalidLimit {
            limit: "device-rule",
            value: text.to_string(),
            reason: reason.to_string(),
        };
        let mut words = text.split_whitespace();
        let kind = match words.next() {
            Some("a") => DeviceKind::All,
            Some("c") => DeviceKind::Char,
            Some("b") => DeviceKind::Block,
            _ => return Err(bad("the type must be a, c or b")),
        };
        let (major, minor) = match words.next() {
            None => (None, None),
            Some(nums) => {
                let (ma, mi) = nums
                    .split_once(':')
                    .ok_or_else(|| bad("expected MAJOR:MINOR"))?;
                let num = |s: &str| -> Result<Option<u32>> {
                    match s {
                        "*" => Ok(None),
                        _ => s
                            .parse()
                            .map(Some)
                            .map_err(|_| bad("a device number must be a number or *")),
                    }
                };
                (num(ma)?, num(mi)?)
            }
        };
        let access = match words.next() {
            None => ALL_ACCESS,
            Some(a) => parse_access(a).ok_or_else(|| bad("access must be letters of rwm"))?,
        };
        if words.next().is_some() {
            return Err(bad("too many fields"));
        }
        Ok(DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        })
    }

    /// The rule of an OCI `linux.resources.devices` entry (absent fields mean "any").
    pub fn from_oci(d: &oci_spec::runtime::LinuxDeviceCgroup) -> Result<DeviceRule> {
        use oci_spec::runtime::LinuxDeviceType as T;
        let kind = match d.typ() {
            None | Some(T::A) => DeviceKind::All,
            Some(T::C) | Some(T::U) => DeviceKind::Char,
            Some(T::B) => DeviceKind::Block,
            Some(T::P) => {
                return Err(CgroupError::InvalidLimit {
                    limit: "device-rule",
                    value: "p".into(),
                    reason: "a rule cannot name FIFOs".into(),
                });
            }
        };
        let num = |n: Option<i64>| n.filter(|n| *n >= 0).map(|n| n as u32);
        let access = match d.access().as_deref() {
            None | Some("") => ALL_ACCESS,
            Some(a) => parse_access(a).ok_or_else(|| CgroupError::InvalidLimit {
                limit: "device-rule",
                value: a.to_string(),
                reason: "access must be letters of rwm".into(),
            })?,
        };
        Ok(DeviceRule {
            allow: d.allow(),
            kind,
            major: num(d.major()),
            minor: num(d.minor()),
            access,
        })
    }

    /// "a" with any number and every access: resets the list to allow-all or deny-all.
    fn is_reset(&self) -> bool {
        self.kind == DeviceKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ALL_ACCESS
    }

    /// Whether this rule decides a request (v1 semantics): an allow rule when it grants every access
    /// asked for, a deny rule when it forbids any of them.
    pub fn matches(&self, kind: DeviceKind, major: u32, minor: u32, access: u8) -> bool {
        (self.kind == DeviceKind::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && if self.allow {
                access & !self.access == 0
            } else {
                access & self.access != 0
            }
    }

    /// The v1 file this rule is written to.
    pub fn v1_file(&self) -> &'static str {
        if self.allow {
            "devices.allow"
        } else {
            "devices.deny"
        }
    }
}

fn parse_access(a: &str) -> Option<u8> {
    a.chars().try_fold(0u8, |acc, c| match c {
        'm' => Some(acc | MKNOD),
        'r' => Some(acc | READ),
        'w' => Some(acc | WRITE),
        _ => None,
    })
}

/// v1 syntax, as written to `devices.allow` / `devices.deny`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DeviceKind::All => "a",
            DeviceKind::Char => "c",
            DeviceKind::Block => "b",
        };
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let access: String = [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
            .iter()
            .filter(|(bit, _)| self.access & bit != 0)
            .map(|(_, c)| c)
            .collect();
        write!(f, "{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

/// Devices every container may use, and creating any node (opening it stays denied), as runc adds
/// them to every spec: the nodes strata makes in /dev, the container's ptys, and /dev/net/tun.
const ALWAYS_ALLOWED: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

fn always_allowed() -> impl Iterator<Item = DeviceRule> {
    ALWAYS_ALLOWED
        .iter()
        .map(|r| DeviceRule::parse(true, r).expect("the built-in device rules parse"))
}

/// Docker's default for a container: deny every device, then allow the standard ones.
pub fn docker_default() -> Vec<DeviceRule> {
    std::iter::once(DeviceRule::parse(false, "a").expect("a parses"))
        .chain(always_allowed())
        .collect()
}

/// The rules of an OCI spec's `linux.resources.devices`, followed by the always-allowed devices when
/// there is any rule (runc's behaviour). No rule at all leaves the devices unrestricted.
pub fn from_oci(devs: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>> {
    let mut rules = devs
        .iter()
        .map(DeviceRule::from_oci)
        .collect::<Result<Vec<_>>>()?;
    if !rules.is_empty() {
        rules.extend(always_allowed());
    }
    Ok(rules)
}

/// What `rules` decide after a v1 cgroup that allowed everything had them written in order: the
/// default and the rules still in force (a reset rule drops the ones before it).
fn effective(rules: &[DeviceRule]) -> (bool, &[DeviceRule]) {
    match rules.iter().rposition(DeviceRule::is_reset) {
        Some(i) => (rules[i].allow, &rules[i + 1..]),
        None => (true, rules),
    }
}

/// Whether `rules` let a process open (or mknod) the device: the last rule that matches decides.
pub fn allows(rules: &[DeviceRule], kind: DeviceKind, major: u32, minor: u32, access: u8) -> bool {
    let (default, rules) = effective(rules);
    rules
        .iter()
        .rev()
        .find(|r| r.matches(kind, major, minor, access))
        .map_or(default, |r| r.allow)
}

/// One eBPF instruction (`struct bpf_insn`): opcode, dst_reg | src_reg << 4, offset, immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes (linux/bpf.h, linux/bpf_common.h).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

// Registers the program keeps the request in (r1 holds the context, then serves as scratch).
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// Compiles `rules` into a `BPF_PROG_TYPE_CGROUP_DEVICE` program with the semantics of [`allows`].
/// Its context is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, the access
/// bits in the high half of access_type and the device type in the low half; it returns 1 to allow.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let (default, rules) = effective(rules);
    let mut prog = vec![
        insn(LDX_W, TYPE, R1, 0, 0),
        insn(AND32_K, TYPE, 0, 0, 0xffff),
        insn(LDX_W, ACCESS, R1, 0, 0),
        insn(RSH32_K, ACCESS, 0, 0, 16),
        insn(LDX_W, MAJOR, R1, 4, 0),
        insn(LDX_W, MINOR, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // Each test jumps past the end of this rule's block when the rule does not apply.
        let mut block: Vec<Insn> = Vec::new();
        match rule.kind {
            DeviceKind::All => {}
            DeviceKind::Char => block.push(insn(JNE_K, TYPE, 0, 0, DEV_CHAR)),
            DeviceKind::Block => block.push(insn(JNE_K, TYPE, 0, 0, DEV_BLOCK)),
        }
        if rule.allow {
            if rule.access != ALL_ACCESS {
                // Skip unless every access asked for is granted: (access & ~granted) == 0.
                block.push(insn(MOV32_X, R1, ACCESS, 0, 0));
                block.push(insn(
                    AND32_K,
                    R1,
                    0,
                    0,
                    i32::from(!rule.access & ALL_ACCESS),
                ));
                block.push(insn(JNE_K, R1, 0, 0, 0));
            }
        } else if rule.access != ALL_ACCESS {
            // Skip unless some access asked for is forbidden: (access & forbidden) != 0.
            block.push(insn(MOV32_X, R1, ACCESS, 0, 0));
            block.push(insn(AND32_K, R1, 0, 0, i32::from(rule.access)));
            block.push(insn(JEQ_K, R1, 0, 0, 0));
        }
        if let Some(m) = rule.major {
            block.push(insn(JNE_K, MAJOR, 0, 0, m as i32));
        }
        if let Some(m) = rule.minor {
            block.push(insn(JNE_K, MINOR, 0, 0, m as i32));
        }
        block.push(insn(MOV64_K, R0, 0, 0, i32::from(rule.allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if matches!(ins.code, JNE_K | JEQ_K) {
                ins.off = (len - i - 1) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(insn(MOV64_K, R0, 0, 0, i32::from(default)));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

/// Writes the rules in order into the v1 devices cgroup `dir`, each in its own write(2) (the kernel takes
/// one rule per write), through one open file per kind of rule.
pub fn write_v1(dir: &std::path::Path, rules: &[DeviceRule]) -> Result<()> {
    use std::io::Write;
    let mut files: [Option<std::fs::File>; 2] = [None, None];
    for rule in rules {
        let name = rule.v1_file();
        let file = &mut files[usize::from(rule.allow)];
        let value = rule.to_string();
        let rejected = |source| CgroupError::LimitRejected {
            limit: "device-rule",
            file: name.to_string(),
            value: value.clone(),
            source,
        };
        if file.is_none() {
            let path = dir.join(name);
            *file = Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(rejected)?,
            );
        }
        if let Some(f) = file {
            f.write_all(value.as_bytes()).map_err(rejected)?;
        }
    }
    Ok(())
}

/// Where strata pins the device programs it loads, named by their instructions, in the host's bpffs.
pub const PIN_DIR: &str = "/sys/fs/bpf/strata";

/// The pin of `prog` in `dir`: "dev-" and the first 16 bytes of the SHA-256 of its instructions, in hex.
fn pin_path(dir: &std::path::Path, prog: &[Insn]) -> std::ffi::CString {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for i in prog {
        h.update([i.code, i.regs]);
        h.update(i.off.to_le_bytes());
        h.update(i.imm.to_le_bytes());
    }
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.join(format!("dev-{hex}"));
    std::ffi::CString::new(path.into_os_string().into_encoded_bytes())
        .unwrap_or_else(|_| c"/nonexistent/pin path with a NUL".to_owned())
}

/// Attaches a device program enforcing `rules` to the cgroup v2 directory `cgroup`. Loading a program
/// (the verifier, the JIT) costs ~0.35 ms per container on this project's test VM, attaching one
/// ~0.05 ms: so a program loaded once is pinned in the host's bpffs under [`PIN_DIR`], by the hash of its
/// instructions, and later containers with the same rules attach the pinned program. Without a bpffs at
/// /sys/fs/bpf every container loads its own. The pins can be deleted at any time: an attached program
/// lives as long as its cgroup, and the next container pins again.
pub fn attach(cgroup: std::os::fd::BorrowedFd<'_>, rules: &[DeviceRule]) -> std::io::Result<()> {
    attach_pinned(cgroup, rules, std::path::Path::new(PIN_DIR))
}

/// [`attach`] with the pins in `pin_dir`, a directory in a bpffs (made when missing).
pub fn attach_pinned(
    cgroup: std::os::fd::BorrowedFd<'_>,
    rules: &[DeviceRule],
    pin_dir: &std::path::Path,
) -> std::io::Result<()> {
    use crate::sys;
    use std::os::fd::AsFd;
    let prog = program(rules);
    let pin = pin_path(pin_dir, &prog);
    if let Ok(fd) = sys::bpf_obj_get(&pin) {
        if sys::attach_device_program(cgroup, fd.as_fd()).is_ok() {
            return Ok(());
        }
        // Not an attachable device program after all: load a fresh one and pin that instead.
        let _ = std::fs::remove_file(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(pin.as_bytes()),
        );
    }
    let fd = sys::load_device_program(&prog)?;
    sys::attach_device_program(cgroup, fd.as_fd())?;
    // Best effort: with no bpffs mounted, or a race with another strata pinning the same program, the
    // next container loads its own or finds the other's.
    let _ = std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(pin_dir);
    let _ = sys::bpf_obj_pin(fd.as_fd(), &pin);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` on one request with the subset of eBPF that [`program`] emits.
    fn interpret(prog: &[Insn], kind: DeviceKind, major: u32, minor: u32, access: u8) -> bool {
        let typ = match kind {
            DeviceKind::Block => DEV_BLOCK as u64,
            DeviceKind::Char => DEV_CHAR as u64,
            DeviceKind::All => unreachable!("requests name a type"),
        };
        let ctx = [(u64::from(access) << 16) | typ, major.into(), minor.into()];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = ctx[(i.off / 4) as usize] & 0xffff_ffff;
                }
                AND32_K => r[dst] = (r[dst] & imm) & 0xffff_ffff,
                RSH32_K => r[dst] = (r[dst] & 0xffff_ffff) >> imm,
                MOV32_X => r[dst] = r[src] & 0xffff_ffff,
                MOV64_K => r[dst] = imm,
                JNE_K if r[dst] != imm => pc += i.off as usize,
                JEQ_K if r[dst] == imm => pc += i.off as usize,
                JNE_K | JEQ_K => {}
                EXIT => return r[0] == 1,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn rules(list: &[(bool, &str)]) -> Vec<DeviceRule> {
        list.iter()
            .map(|(a, r)| DeviceRule::parse(*a, r).unwrap())
            .collect()
    }

    #[test]
    fn parses_and_prints_v1_syntax() {
        let r = DeviceRule::parse(true, "c 136:* rwm").unwrap();
        assert_eq!(
            (r.kind, r.major, r.minor, r.access),
            (DeviceKind::Char, Some(136), None, 7)
        );
        assert_eq!(r.to_string(), "c 136:* rwm");
        assert_eq!(
            DeviceRule::parse(false, "a").unwrap().to_string(),
            "a *:* rwm"
        );
        assert_eq!(
            DeviceRule::parse(true, "b 8:0 mr").unwrap().to_string(),
            "b 8:0 rm"
        );
        for bad in [
            "x 1:3 rwm",
            "c 1 rwm",
            "c 1:x rwm",
            "c 1:3 rwx",
            "c 1:3 r w",
            "",
        ] {
            assert!(
                DeviceRule::parse(true, bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn docker_default_opens_the_standard_nodes_only() {
        let d = docker_default();
        let rw = READ | WRITE;
        assert!(allows(&d, DeviceKind::Char, 1, 3, rw), "/dev/null");
        assert!(allows(&d, DeviceKind::Char, 136, 7, rw), "a pty");
        assert!(
            allows(&d, DeviceKind::Block, 8, 0, MKNOD),
            "mknod of a disk"
        );
        assert!(!allows(&d, DeviceKind::Block, 8, 0, READ), "reading a disk");
        assert!(!allows(&d, DeviceKind::Char, 1, 1, READ), "/dev/mem");
        assert!(!allows(&d, DeviceKind::Char, 10, 229, rw), "/dev/fuse");
    }

    #[test]
    fn deny_rules_forbid_any_access_they_name() {
        let r = rules(&[(true, "a"), (false, "c 1:3 w")]);
        assert!(allows(&r, DeviceKind::Char, 1, 3, READ));
        assert!(!allows(&r, DeviceKind::Char, 1, 3, READ | WRITE));
        assert!(allows(&r, DeviceKind::Char, 1, 5, WRITE));
        // A later reset drops everything before it.
        let r = rules(&[(false, "c 1:3 rwm"), (true, "a *:* rwm")]);
        assert!(allows(&r, DeviceKind::Char, 1, 3, READ));
        assert!(
            allows(&[], DeviceKind::Block, 8, 0, READ),
            "no rule allows all"
        );
    }

    /// The compiled program decides every request exactly as the rules say.
    #[test]
    fn the_program_agrees_with_the_rules() {
        let sets = [
            docker_default(),
            rules(&[(true, "a"), (false, "c 1:3 w"), (false, "b *:* r")]),
            rules(&[(false, "a"), (true, "c 1:* r"), (true, "b 8:0 rw")]),
            rules(&[(false, "c 1:3 rwm"), (true, "a *:* rwm")]),
            Vec::new(),
        ];
        for set in &sets {
            let prog = program(set);
            for kind in [DeviceKind::Char, DeviceKind::Block] {
                for (major, minor) in [(1, 3), (1, 5), (5, 2), (8, 0), (10, 229), (136, 4)] {
                    for access in 1..=ALL_ACCESS {
                        assert_eq!(
                            interpret(&prog, kind, major, minor, access),
                            allows(set, kind, major, minor, access),
                            "{kind:?} {major}:{minor} access {access} under {set:?}"
                        );
                    }
                }
            }
        }
    }
}
