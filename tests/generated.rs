//! The shell completions and the man page the .deb ships are generated from the command-line definition and kept
//! in `debian/generated/`. This test fails when they are stale; `WATCHPOST_BLESS=1 cargo test --test generated`
//! rewrites them.
use clap_complete::{generate, Shell};
use std::path::Path;

fn check(name: &str, text: &[u8], stale: &mut Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("debian/generated")
        .join(name);
    if std::env::var_os("WATCHPOST_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        return;
    }
    if std::fs::read(&path).ok().as_deref() != Some(text) {
        stale.push(name.to_string());
    }
}

#[test]
fn completions_and_man_page_match_the_command_line() {
    let mut stale = Vec::new();
    for (shell, name) in [
        (Shell::Bash, "watchpost.bash"),
        (Shell::Zsh, "_watchpost"),
        (Shell::Fish, "watchpost.fish"),
    ] {
        let mut out = Vec::new();
        generate(shell, &mut watchpost::cli::command(), "watchpost", &mut out);
        check(name, &out, &mut stale);
    }
    // The man pages name the release, not the git revision the test happened to be built from.
    let cmd = watchpost::cli::command().long_version(None::<&str>);
    let mut pages = vec![("watchpost".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("watchpost-{}", sub.get_name());
        let leaked: &'static str = name.clone().leak();
        pages.push((
            name,
            sub.clone().name(leaked).version(env!("CARGO_PKG_VERSION")),
        ));
    }
    for (name, page) in pages {
        let mut man = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut man)
            .expect("render");
        check(&format!("{name}.1"), &man, &mut stale);
    }
    assert!(
        stale.is_empty(),
        "debian/generated/{{{}}} are stale: run WATCHPOST_BLESS=1 cargo test --test generated",
        stale.join(",")
    );
}
