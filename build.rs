//! Build metadata for `watchpost --version`: the git revision (or WATCHPOST_GIT_REV when building from a tarball).
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=WATCHPOST_GIT_REV");
    // HEAD and the refs, not .git/index: `git status` and `git describe --dirty` rewrite the index, and watching
    // it rebuilt the crate after almost every git command. "-dirty" is therefore as of the last commit or checkout.
    // Only paths that exist: cargo takes a missing one as changed, and a repository without packed refs rebuilt the
    // crate (a minute of LTO) on every `cargo run`.
    for p in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let rev = std::env::var("WATCHPOST_GIT_REV").ok().or_else(|| {
        let out = Command::new("git")
            .args(["describe", "--always", "--dirty", "--abbrev=12"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    });
    println!(
        "cargo:rustc-env=WATCHPOST_GIT_REV={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_lowercase().replace('_', "-"))
        })
        .filter(|f| f != "default")
        .collect();
    features.sort();
    println!("cargo:rustc-env=WATCHPOST_FEATURES={}", features.join(" "));
    println!(
        "cargo:rustc-env=WATCHPOST_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    unwind_tables();
}

/// Release builds abort on panic (Cargo.toml), so nothing unwinds: their unwind tables (`.eh_frame` and its index,
/// 0.77 MB of the x86-64 binary) would serve only the addresses of a panic's backtrace, which has no symbol names
/// in the stripped binary anyway (the panic's message and file:line are printed without them). The binary is
/// linked without them (GNU ld, as every build of the repository uses). Debug and test builds keep them (tests
/// unwind). `PROFILE` and not `CARGO_CFG_PANIC`: cargo gives build scripts the target's default, not the profile's.
fn unwind_tables() {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("PROFILE") != "release"
        || env("CARGO_CFG_TARGET_OS") != "linux"
        || env("CARGO_CFG_TARGET_ENV") != "gnu"
    {
        return;
    }
    let script = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join("link/discard-unwind.ld");
    println!("cargo:rerun-if-changed=link/discard-unwind.ld");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
