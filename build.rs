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
}
