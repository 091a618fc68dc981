//! uid/gid translation between the ids stored in the layers ("disk") and the ids the mount shows
//! ("shown"), with fuse-overlayfs's `uidmapping=`/`gidmapping=` syntax: `DISK:SHOWN:LEN[:DISK:SHOWN:LEN…]`.
//!
//! A mount made inside a user namespace shows ids of that namespace (the kernel maps them to host ids
//! through the namespace), so a container's upper layer stored with host ids (100000…) is shown through
//! a map `100000:0:65536`, while image layers stored with unshifted ids need none.

/// The id fuse-overlayfs (and the kernel) report for an id outside every range.
pub const OVERFLOW_ID: u32 = 65534;

/// One range: disk ids `disk..disk+len` are shown as `shown..shown+len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub disk: u32,
    pub shown: u32,
    pub len: u32,
}

/// A list of ranges; empty means identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    pub ranges: Vec<IdRange>,
}

/// Why a mapping string does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad id mapping '{0}': want DISK:SHOWN:LEN[:DISK:SHOWN:LEN…]")]
pub struct IdMapError(pub String);

impl IdMap {
    /// Parses `DISK:SHOWN:LEN[:…]` (fuse-overlayfs order: host id first, then the id it appears as).
    pub fn parse(s: &str) -> Result<IdMap, IdMapError> {
        let bad = || IdMapError(s.to_string());
        let nums: Vec<u32> = s
            .split(':')
            .map(|n| n.parse::<u32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        if nums.is_empty() || nums.len() % 3 != 0 {
            return Err(bad());
        }
        let ranges: Vec<IdRange> = nums
            .chunks(3)
            .map(|c| IdRange {
                disk: c[0],
                shown: c[1],
                len: c[2],
            })
            .collect();
        if ranges.iter().any(|r| {
            r.len == 0
                || r.disk.checked_add(r.len - 1).is_none()
                || r.shown.checked_add(r.len - 1).is_none()
        }) {
            return Err(bad());
        }
        Ok(IdMap { ranges })
    }

    /// A single range.
    pub fn single(disk: u32, shown: u32, len: u32) -> IdMap {
        IdMap {
            ranges: vec![IdRange { disk, shown, len }],
        }
    }

    pub fn is_identity(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The id a disk id is shown as (the overflow id when no range holds it).
    pub fn shown(&self, disk: u32) -> u32 {
        if self.ranges.is_empty() {
            return disk;
        }
        self.ranges
            .iter()
            .find(|r| disk >= r.disk && disk - r.disk < r.len)
            .map_or(OVERFLOW_ID, |r| r.shown + (disk - r.disk))
    }

    /// The disk id a shown id is stored as (the overflow id when no range holds it).
    pub fn disk(&self, shown: u32) -> u32 {
        if self.ranges.is_empty() {
            return shown;
        }
        self.ranges
            .iter()
            .find(|r| shown >= r.shown && shown - r.shown < r.len)
            .map_or(OVERFLOW_ID, |r| r.disk + (shown - r.shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fuse_overlayfs_syntax_and_maps_both_ways() {
        let m = IdMap::parse("100000:0:65536:5000:70000:10").unwrap();
        assert_eq!(m.shown(100000), 0);
        assert_eq!(m.shown(101000), 1000);
        assert_eq!(m.shown(5003), 70003);
        assert_eq!(m.shown(0), OVERFLOW_ID);
        assert_eq!(m.disk(0), 100000);
        assert_eq!(m.disk(1000), 101000);
        assert_eq!(m.disk(70009), 5009);
        assert_eq!(m.disk(70010), OVERFLOW_ID);
        assert_eq!(IdMap::default().shown(42), 42);
    }

    #[test]
    fn rejects_malformed() {
        for s in ["", "1:2", "a:b:c", "0:0:0", "4294967295:0:2", "1:2:3:4"] {
            assert!(IdMap::parse(s).is_err(), "{s}");
        }
    }
}
