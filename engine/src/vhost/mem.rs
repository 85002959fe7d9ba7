//! The frontend's memory table: regions received with SET_MEM_TABLE, mapped into our process.
//!
//! Rules:
//! - At most [`MAX_REGIONS`] regions (the vhost-user protocol's SET_MEM_TABLE limit). Each needs
//!   one fd, a non-zero size, no address arithmetic overflow, and no overlap with another
//!   region in guest-physical or frontend-virtual space; otherwise the whole table is refused.
//! - A region is mapped from file offset 0 up to `mmap_offset + memory_size`, rounded up to the
//!   file's block size (hugetlbfs mappings must be whole huge pages), and only after checking
//!   the file is that large. Guest bytes start at `mmap_offset` inside the mapping.
//! - Every translation checks `addr..addr+len` lies inside one region; a buffer that straddles
//!   two regions is refused (counted as a bad descriptor by the caller), never split.
//! - Mappings are owned by [`GuestMemory`], shared through `Arc` by the queues built on it; the
//!   mapping goes away when the last queue using it and the control thread drop it.
use super::VhostError;
use crate::shm::{MmapRegion, Seg, SegMut};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

/// SET_MEM_TABLE carries at most 8 regions (VHOST_MEMORY_BASELINE_NREGIONS).
pub const MAX_REGIONS: usize = 8;

/// One region of the table as the frontend described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionDesc {
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub user_addr: u64,
    pub mmap_offset: u64,
}

struct Region {
    gpa: u64,
    uva: u64,
    size: u64,
    /// Offset of guest byte 0 of this region inside `map`.
    off: u64,
    map: MmapRegion,
}

/// The mapped memory table of one connection.
pub struct GuestMemory {
    regions: Vec<Region>,
}

impl std::fmt::Debug for GuestMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GuestMemory({} regions, {} bytes)",
            self.regions.len(),
            self.total_size()
        )
    }
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

/// Where `addr..addr + len` falls against a region of `size` bytes starting at `start` and
/// mapped at mapping offset `off`: None when `addr` is not in the region; `Some(None)` when it
/// starts there but runs past the region's end; `Some(Some(mapping offset))` when it fits.
#[inline]
fn locate(start: u64, size: u64, off: u64, addr: u64, len: u64) -> Option<Option<usize>> {
    let rel = addr.wrapping_sub(start);
    if addr < start || rel >= size {
        return None;
    }
    Some((len <= size - rel).then(|| (off + rel) as usize))
}

impl GuestMemory {
    /// Validates and maps a memory table. `files[i]` backs `regions[i]`.
    pub fn new(regions: &[RegionDesc], files: Vec<File>) -> Result<GuestMemory, VhostError> {
        let bad = |m: String| VhostError::MemTable(m);
        if regions.is_empty() || regions.len() > MAX_REGIONS {
            return Err(bad(format!(
                "{} regions (allowed 1..={MAX_REGIONS})",
                regions.len()
            )));
        }
        if files.len() != regions.len() {
            return Err(bad(format!(
                "{} regions but {} fds",
                regions.len(),
                files.len()
            )));
        }
        for (i, r) in regions.iter().enumerate() {
            let ok = r.memory_size > 0
                && r.guest_phys_addr.checked_add(r.memory_size).is_some()
                && r.user_addr.checked_add(r.memory_size).is_some()
                && r.mmap_offset.checked_add(r.memory_size).is_some();
            if !ok {
                return Err(bad(format!(
                    "region {i} has a bad size or overflowing address"
                )));
            }
            for (j, o) in regions[..i].iter().enumerate() {
                if overlaps(
                    r.guest_phys_addr,
                    r.memory_size,
                    o.guest_phys_addr,
                    o.memory_size,
                ) || overlaps(r.user_addr, r.memory_size, o.user_addr, o.memory_size)
                {
                    return Err(bad(format!("regions {j} and {i} overlap")));
                }
            }
        }
        let mut out = Vec::with_capacity(regions.len());
        for (i, (r, file)) in regions.iter().zip(files).enumerate() {
            let meta = file
                .metadata()
                .map_err(|e| bad(format!("region {i}: fstat: {e}")))?;
            let need = r.mmap_offset + r.memory_size;
            if meta.len() < need {
                return Err(bad(format!(
                    "region {i}: file is {} bytes, table needs {need}",
                    meta.len()
                )));
            }
            let blk = meta.blksize().clamp(4096, 1 << 30);
            let len = need.div_ceil(blk).saturating_mul(blk).min(meta.len());
            let map = MmapRegion::from_fd(OwnedFd::from(file), len)?;
            out.push(Region {
                gpa: r.guest_phys_addr,
                uva: r.user_addr,
                size: r.memory_size,
                off: r.mmap_offset,
                map,
            });
        }
        Ok(GuestMemory { regions: out })
    }

    pub fn regions(&self) -> usize {
        self.regions.len()
    }

    pub fn total_size(&self) -> u64 {
        self.regions.iter().map(|r| r.size).sum()
    }

    /// Region index and offset inside its mapping of a guest-physical range.
    #[inline]
    fn find_gpa(&self, gpa: u64, len: u64) -> Option<(usize, usize)> {
        let mut hint = 0;
        self.find_gpa_hint(&mut hint, gpa, len)
    }

    /// [`Self::find_gpa`], trying region `*hint` first (most buffers of a ring come from one
    /// region) and leaving the region found in `*hint`. Same checks whatever the hint.
    #[inline]
    fn find_gpa_hint(&self, hint: &mut usize, gpa: u64, len: u64) -> Option<(usize, usize)> {
        if let Some(hit) = self
            .regions
            .get(*hint)
            .and_then(|r| locate(r.gpa, r.size, r.off, gpa, len))
        {
            return hit.map(|o| (*hint, o));
        }
        for (i, r) in self.regions.iter().enumerate() {
            if let Some(hit) = locate(r.gpa, r.size, r.off, gpa, len) {
                if hit.is_some() {
                    *hint = i;
                }
                return hit.map(|o| (i, o));
            }
        }
        None
    }

    /// Region index and mapping offset of a frontend-virtual range (ring addresses).
    pub fn find_uva(&self, uva: u64, len: u64) -> Option<(usize, usize)> {
        self.regions.iter().enumerate().find_map(|(i, r)| {
            locate(r.uva, r.size, r.off, uva, len).map(|hit| hit.map(|o| (i, o)))
        })?
    }

    /// The mapping of region `i` (ring access after [`Self::find_uva`]).
    #[inline]
    pub fn map(&self, i: usize) -> &MmapRegion {
        &self.regions[i].map
    }

    /// A read-only view of guest-physical `gpa..gpa+len`, None when not inside one region.
    #[inline]
    pub fn gpa_seg(&self, gpa: u64, len: u32) -> Option<Seg> {
        let (i, off) = self.find_gpa(gpa, u64::from(len))?;
        self.regions[i].map.seg(off, len as usize)
    }

    /// A read-only view of guest-physical `gpa+skip..gpa+len` after checking the whole
    /// `gpa..gpa+len` lies inside one region (a buffer minus its virtio-net header), trying
    /// region `*hint` first and leaving the region found there. None when the range is not
    /// inside one region or `skip > len`.
    #[inline]
    pub fn gpa_seg_skip(&self, hint: &mut usize, gpa: u64, len: u32, skip: u32) -> Option<Seg> {
        let rest = len.checked_sub(skip)?;
        let (i, off) = self.find_gpa_hint(hint, gpa, u64::from(len))?;
        self.regions[i].map.seg(off + skip as usize, rest as usize)
    }

    /// [`Self::gpa_seg_mut`], trying region `*hint` first and leaving the region found there.
    #[inline]
    pub fn gpa_seg_mut_hint(&self, hint: &mut usize, gpa: u64, len: u32) -> Option<SegMut> {
        let (i, off) = self.find_gpa_hint(hint, gpa, u64::from(len))?;
        self.regions[i].map.seg_mut(off, len as usize)
    }

    /// A writable view of guest-physical `gpa..gpa+len`, None when not inside one region.
    #[inline]
    pub fn gpa_seg_mut(&self, gpa: u64, len: u32) -> Option<SegMut> {
        let (i, off) = self.find_gpa(gpa, u64::from(len))?;
        self.regions[i].map.seg_mut(off, len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd(len: usize) -> (MmapRegion, File) {
        let (r, _) = MmapRegion::alloc(len, "vhost-mem-test").unwrap();
        let f = File::from(r.fd().try_clone_to_owned().unwrap());
        (r, f)
    }

    #[test]
    fn translates_with_offsets_and_bounds() {
        let (peer, f) = memfd(1 << 20);
        let desc = RegionDesc {
            guest_phys_addr: 0x1000_0000,
            memory_size: 0x8_0000,
            user_addr: 0x7f00_0000_0000,
            mmap_offset: 0x1_0000,
        };
        let m = GuestMemory::new(&[desc], vec![f]).unwrap();
        peer.seg_mut(0x1_0000 + 0x40, 4)
            .unwrap()
            .write(0, &[1, 2, 3, 4]);
        let mut b = [0u8; 4];
        m.gpa_seg(0x1000_0040, 4).unwrap().read(0, &mut b);
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(m.find_uva(0x7f00_0000_0040, 4), Some((0, 0x1_0040)));
        // Past the end, straddling the end, before the start, overflowing.
        assert!(m.gpa_seg(0x1008_0000, 1).is_none());
        assert!(m.gpa_seg(0x1007_fffe, 4).is_none());
        assert!(m.gpa_seg(0x0fff_ffff, 1).is_none());
        assert!(m.gpa_seg(u64::MAX - 1, 4).is_none());
        assert!(m.find_uva(u64::MAX, 2).is_none());
    }

    #[test]
    fn refuses_bad_tables() {
        let ok = RegionDesc {
            guest_phys_addr: 0,
            memory_size: 4096,
            user_addr: 0,
            mmap_offset: 0,
        };
        let (_p, f) = memfd(8192);
        // File smaller than offset + size.
        let big = RegionDesc {
            mmap_offset: 1 << 30,
            ..ok
        };
        assert!(GuestMemory::new(&[big], vec![f]).is_err());
        // Overlapping regions.
        let (_p1, f1) = memfd(8192);
        let (_p2, f2) = memfd(8192);
        let r2 = RegionDesc {
            guest_phys_addr: 2048,
            user_addr: 1 << 30,
            ..ok
        };
        assert!(GuestMemory::new(&[ok, r2], vec![f1, f2]).is_err());
        // Overflow, zero size, too many regions, fd count mismatch.
        let (_p3, f3) = memfd(8192);
        let of = RegionDesc {
            guest_phys_addr: u64::MAX - 10,
            ..ok
        };
        assert!(GuestMemory::new(&[of], vec![f3]).is_err());
        let (_p4, f4) = memfd(8192);
        assert!(GuestMemory::new(
            &[RegionDesc {
                memory_size: 0,
                ..ok
            }],
            vec![f4]
        )
        .is_err());
        assert!(GuestMemory::new(&[ok; 9], vec![]).is_err());
        assert!(GuestMemory::new(&[ok], vec![]).is_err());
    }
}
