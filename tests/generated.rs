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
    let mut cmd = watchpost::cli::command().long_version(None::<&str>);
    // Built, so that clap's `help` subcommand exists: watchpost(1) lists it and gets a page for it.
    cmd.build();
    let mut pages = vec![("watchpost".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("watchpost-{}", sub.get_name());
        let leaked: &'static str = name.clone().leak();
        pages.push((
            name,
            sub.clone().name(leaked).version(env!("CARGO_PKG_VERSION")),
        ));
    }
    for (name, page) in pages {
        let mut man = Vec::new();
        let m = clap_mangen::Man::new(page.clone());
        m.render_title(&mut man).expect("render");
        m.render_name_section(&mut man).expect("render");
        m.render_synopsis_section(&mut man).expect("render");
        m.render_description_section(&mut man).expect("render");
        if page.get_arguments().any(|a| !a.is_hide_set()) {
            m.render_options_section(&mut man).expect("render");
        }
        // `help`'s own subcommands are the other commands, each with its page already.
        if page.has_subcommands() && name != "watchpost-help" {
            m.render_subcommands_section(&mut man).expect("render");
        }
        man.extend_from_slice(extra_sections(&name).as_bytes());
        m.render_version_section(&mut man).expect("render");
        check(&format!("{name}.1"), &man, &mut stale);
    }
    assert!(
        stale.is_empty(),
        "debian/generated/{{{}}} are stale: run WATCHPOST_BLESS=1 cargo test --test generated",
        stale.join(",")
    );
}

/// What a man page needs beyond the command-line definition: files, environment, exit status, signals, examples
/// and where to read on (roff).
fn extra_sections(page: &str) -> String {
    let mut s = String::new();
    let see_also = ".SH \"SEE ALSO\"\n\\fBwatchpost\\fR(1), \\fBwatchpost\\-run\\fR(1), \\fBwatchpost\\-check\\-config\\fR(1), \\fBwatchpost\\-alerts\\fR(1), \\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1); /usr/share/doc/watchpost/README.md and the annotated /usr/share/doc/watchpost/watchpost.toml\n";
    let exit = ".SH \"EXIT STATUS\"\n.TP\n0\nSuccess (for \\fBcheck\\-config\\fR: the file is valid, warnings aside).\n.TP\n1\nA bad configuration or usage: the problem is printed.\n.TP\n2\nA runtime failure (a store that cannot be opened, a server that does not answer).\n";
    if page == "watchpost" || page == "watchpost-run" {
        s.push_str(".SH FILES\n.TP\n\\fI/etc/watchpost/watchpost.toml\\fR\nThe configuration (root:watchpost 0640; every key annotated in /usr/share/doc/watchpost/watchpost.toml; JSON Schema in /usr/share/watchpost/config.schema.json).\n.TP\n\\fI/var/lib/watchpost/\\fR\nThe durable store (watchpost.db: readings, alert events, sink cursors) and remote-overlay.json (alarm settings set through the device shadow).\n.TP\n\\fI/usr/lib/systemd/system/watchpost.service\\fR\nThe unit: Type=notify, WatchdogSec=30s, check\\-config before start and reload.\n");
        s.push_str(".SH ENVIRONMENT\n.TP\n\\fBWATCHPOST_CONFIG\\fR\nThe config file when \\fB\\-\\-config\\fR is not given (default /etc/watchpost/watchpost.toml).\n.TP\n\\fBWATCHPOST__SECTION__KEY\\fR\nOverrides one key of the file, e.g. WATCHPOST__GATEWAY__DATA_DIR=/data or WATCHPOST__MQTT__PASSWORD=...\n.TP\n\\fBRUST_LOG\\fR\nLog filter, e.g. RUST_LOG=watchpost=debug (overrides \\fB\\-\\-log\\-level\\fR).\n.TP\n\\fBCREDENTIALS_DIRECTORY\\fR\nWhere systemd's LoadCredential= puts secrets named by *_credential keys.\n.TP\n\\fBWATCHPOST_MQTT_PASSWORD\\fR\nThe password of \\fBwatchpost alerts\\fR.\n");
        s.push_str(exit);
        s.push_str(".SH SIGNALS\n.TP\n\\fBSIGTERM\\fR, \\fBSIGINT\\fR\nStop in order: sources first, queued readings committed, sinks drain for up to 3 s, the rest stays in the store. A second signal more than a second later exits at once (one forwarded by a wrapper within the second is the same request).\n.TP\n\\fBSIGHUP\\fR\nRead the file again and apply it live; an invalid file is refused and the running configuration stays.\n");
        s.push_str(".SH EXAMPLES\n.nf\nwatchpost run \\-\\-config config/demo.toml\nwatchpost check\\-config /etc/watchpost/watchpost.toml\nsudo systemctl reload watchpost\nwatchpost buffer status\nwatchpost read oil_temp\nwatchpost alerts\nwatchpost alerts ack gw1:oil_temp:17 \\-\\-by alice\n.fi\n");
    } else {
        s.push_str(exit);
        let example = match page {
            "watchpost-check-config" => "watchpost check\\-config /etc/watchpost/watchpost.toml\nwatchpost check\\-config \\-\\-file\\-only site\\-b.toml\nwatchpost check\\-config \\-\\-effective",
            "watchpost-alerts" => "watchpost alerts\nwatchpost alerts \\-\\-broker mqtts://broker:8883 \\-\\-gateway gw1\nwatchpost alerts shelve \\-\\-sensor vibration_2 \\-\\-duration 2h \\-\\-by bob",
            "watchpost-buffer" => "watchpost buffer status \\-\\-json\nwatchpost buffer export \\-\\-since 2h \\-\\-format csv",
            "watchpost-scan" => "watchpost scan modbus \\-\\-url tcp://10.0.0.5:502 \\-\\-units 1\\-10\nwatchpost scan i2c \\-\\-bus /dev/i2c\\-1",
            "watchpost-read" => "watchpost read\nwatchpost read oil_temp \\-\\-json",
            _ => "",
        };
        if !example.is_empty() {
            s.push_str(&format!(".SH EXAMPLES\n.nf\n{example}\n.fi\n"));
        }
    }
    s.push_str(see_also);
    s
}

/// `cargo run` after `git status` does not rebuild the crate: the build script watches HEAD and the refs, not
/// `.git/index`, which `git status` and `git describe --dirty` rewrite; and only those that exist (cargo takes a
/// missing path as changed: a repository without packed refs rebuilt on every run).
#[test]
fn the_build_script_does_not_watch_the_git_index() {
    let build = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("build.rs"))
        .expect("build.rs");
    assert!(!build.contains(".git/index\""), "{build}");
    assert!(build.contains("\".git/HEAD\""), "{build}");
    assert!(
        build.contains(".exists()") && build.contains("rerun-if-changed={p}"),
        "{build}"
    );
}
