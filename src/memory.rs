//! Giving memory back: freed heap pages (glibc keeps them otherwise) and the code pages only start-up used.
//!
//! Most of a small daemon's RSS is its code. The kernel maps a program's pages 64 KiB at a time around each page
//! touched (fault-around), and keeps them mapped for the life of the process: everything start-up ran (the config
//! parser, the CLI, TLS set-up, opening the store) stays counted, in this binary and in libc and libm. Dropping the
//! mappings of read-only, file-backed segments costs nothing but a minor fault when a page is used again (from the
//! page cache); what runs steadily comes back, the rest stays out. Only mappings with no private copy of any page
//! (`Anonymous: 0 kB` in smaps) are dropped — a page the loader or a debugger wrote to is never touched — so the
//! content after a fault is the file's, as before.

/// Give back freed heap pages and the mappings of code not used since the last call.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
        for (start, end) in clean_read_only(&smaps) {
            // SAFETY: the range is a whole private read-only file mapping with no page of its own (checked in
            // smaps): after MADV_DONTNEED its pages fault back in from the file, unchanged.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

/// The private, read-only, file-backed mappings of `smaps` with no anonymous (copied-on-write) page.
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
            let range = usize::from_str_radix(a, 16)
                .ok()
                .zip(usize::from_str_radix(b, 16).ok());
            current =
                range.filter(|_| perms.starts_with("r-") && perms.ends_with('p') && inode != "0");
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
55d0c0000000-55d0c016e000 r--p 00000000 fd:01 123 /usr/bin/watchpost
Rss:                 400 kB
Anonymous:             0 kB
55d0c016e000-55d0c055d000 r-xp 0016d000 fd:01 123 /usr/bin/watchpost
Anonymous:             0 kB
55d0c055d000-55d0c0585000 r--p 0055b000 fd:01 123 /usr/bin/watchpost
Anonymous:           160 kB
55d0c0585000-55d0c058a000 rw-p 00582000 fd:01 123 /usr/bin/watchpost
Anonymous:            20 kB
55d0c2000000-55d0c2100000 rw-p 00000000 00:00 0 [heap]
Anonymous:           900 kB
7f0000000000-7f0000010000 r--s 00000000 fd:01 77 /var/lib/watchpost/watchpost.db-shm
Anonymous:             0 kB
7f0000020000-7f0000030000 r--p 00000000 00:00 0
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            super::clean_read_only(smaps),
            vec![
                (0x55d0c0000000, 0x55d0c016e000),
                (0x55d0c016e000, 0x55d0c055d000)
            ]
        );
    }

    #[test]
    fn the_process_survives_giving_its_code_back_and_runs_it_again() {
        super::give_back();
        super::give_back();
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        assert!(
            !super::clean_read_only(&smaps).is_empty(),
            "the test binary's own code is chosen"
        );
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
