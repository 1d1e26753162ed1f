//! Giving memory back: freed heap pages (glibc keeps them otherwise) and the code pages only start-up used.
//!
//! Most of a small daemon's RSS is code: its own, libc's, libm's. The kernel maps a program's pages 64 KiB at a
//! time around each page touched (fault-around) and keeps them mapped for the life of the process: everything
//! start-up ran (the config parser, the CLI, TLS set-up, opening the store) stayed counted. Dropping the mappings of
//! read-only segments costs a minor fault when a page is used again (it comes back from the page cache, unchanged);
//! what runs steadily comes back, the rest stays out.
//!
//! Only private, read-only, file-backed mappings are dropped, and only those with no page of their own (`Anonymous: 0 kB` in smaps: the loader's RELRO and anything written are never touched). And only natively,
//! where a dropped page demonstrably comes back as the file has it: a canary page of the binary's read-only data is
//! dropped first and read back. Under a user-mode emulator (qemu-user 7.2 crashed after the same calls: it keeps
//! its own state for the guest's pages) nothing is dropped.

/// A page of the binary's read-only data with known content: dropped first, it must read back unchanged.
#[repr(C, align(4096))]
struct Canary([u8; 4096]);
static CANARY: Canary = Canary([0xa5; 4096]);

/// Blocks from this size up get their own mapping, returned to the system when freed, and free memory at the
/// heap's top beyond this goes back at once (glibc would otherwise raise the bar to the largest block freed, and a
/// heap that grew would stay grown). A backlog drain runs with these too: raising them while it ran (8 MB mapped,
/// 32 MB kept) saved page faults but left the heap fragmented after it, +1.3-3 MB RSS for good after the first
/// outage (the soak), for CPU that reading only what a chunk needs (`Store::batches_for`) has since more than
/// paid back; see docs/performance.md.
const STEADY: i32 = 64 << 10;

/// The allocator for a small daemon: one malloc arena (glibc gives every thread its own otherwise; one is plenty
/// at gateway rates and keeps RSS small) and the thresholds above. Call before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, STEADY);
        libc::mallopt(libc::M_TRIM_THRESHOLD, STEADY);
    }
}

/// Give back freed heap pages and the mappings of code and read-only data not used since the last call.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    drop_code();
}

/// Whether dropping a read-only file page keeps its content here (see the module's notes); asked once.
#[cfg(target_os = "linux")]
fn dropping_is_safe() -> bool {
    static SAFE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SAFE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        // A larger page than the canary's would take its neighbours with it.
        if page != 4096 {
            return false;
        }
        // A user-mode emulator runs the program as its own: the kernel's executable of this thread is not the
        // one the program was started as (qemu-user answers /proc/self, not /proc/thread-self).
        let exe = |p: &str| std::fs::read_link(p).ok();
        if exe("/proc/self/exe").is_none() || exe("/proc/self/exe") != exe("/proc/thread-self/exe")
        {
            return false;
        }
        let p = CANARY.0.as_ptr();
        // SAFETY: the canary is one whole page of this binary's read-only data (aligned and sized to it); if the
        // platform zeroes it, only the canary is lost.
        unsafe {
            libc::madvise(p as *mut libc::c_void, 4096, libc::MADV_DONTNEED);
        }
        // Volatile reads: the compiler knows the constant and would otherwise not look.
        // SAFETY: in bounds of the canary.
        [0, 2048, 4095]
            .iter()
            .all(|&i| unsafe { std::ptr::read_volatile(p.add(i)) } == 0xa5)
    })
}

#[cfg(target_os = "linux")]
fn drop_code() {
    if !dropping_is_safe() {
        return;
    }
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in clean_read_only(&smaps) {
        // SAFETY: the range is a whole private read-only file mapping with no page of its own (checked in smaps),
        // on a platform where a dropped page comes back from the file (the canary): after MADV_DONTNEED its pages
        // fault back in unchanged — as after the kernel reclaims them under memory pressure, which it may at any
        // time.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The private, read-only, file-backed mappings in `smaps` with no anonymous (copied-on-write) page.
fn clean_read_only(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            // A mapping's header: range, perms, offset, dev, inode, path.
            let perms = f.next().unwrap_or("");
            let inode = f.nth(2).unwrap_or("0");
            let path = f.next().unwrap_or("");
            let range = usize::from_str_radix(a, 16)
                .ok()
                .zip(usize::from_str_radix(b, 16).ok());
            let file = inode != "0" && path.starts_with('/');
            current = range.filter(|_| perms.starts_with("r-") && perms.ends_with('p') && file);
        } else if first == "Anonymous:" {
            if let (Some(r), Some("0")) = (current.take(), f.next()) {
                out.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_clean_private_read_only_file_mappings_are_chosen() {
        let smaps = "\
55d00000-5616e000 r--p 00000000 fd:01 123 /usr/bin/watchpost
Rss:                 400 kB
Anonymous:             0 kB
5616e000-5655d000 r-xp 0016d000 fd:01 123 /usr/bin/watchpost
Anonymous:             0 kB
5655d000-56585000 r--p 0055b000 fd:01 123 /usr/bin/watchpost
Anonymous:           160 kB
56585000-5658a000 rw-p 00582000 fd:01 123 /usr/bin/watchpost
Anonymous:            20 kB
58000000-58100000 rw-p 00000000 00:00 0 [heap]
Anonymous:           900 kB
7e000000-7e100000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f000000-7f010000 r--s 00000000 fd:01 77 /var/lib/watchpost/watchpost.db-shm
Anonymous:             0 kB
7f020000-7f030000 r--p 00000000 00:00 0
Anonymous:             0 kB
7ffd0000-7ffd2000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            super::clean_read_only(smaps),
            vec![
                (0x55d0_0000, 0x5616_e000),
                (0x5616_e000, 0x5655_d000),
                (0x7e00_0000, 0x7e10_0000)
            ]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_survives_giving_its_code_back_and_runs_it_again() {
        super::give_back();
        super::give_back();
        assert_eq!(format!("{}", 6 * 7), "42");
        // The tests run natively on x86-64 (the ARM unit tests run under qemu-user, where nothing is dropped).
        #[cfg(target_arch = "x86_64")]
        assert!(
            super::dropping_is_safe(),
            "natively, a dropped page comes back"
        );
        if super::dropping_is_safe() {
            let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
            let here = super::give_back as *const () as usize;
            assert!(
                super::clean_read_only(&smaps)
                    .iter()
                    .any(|(a, b)| (*a..*b).contains(&here)),
                "the test binary's own code is chosen"
            );
        }
    }
}
