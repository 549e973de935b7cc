//! `dsm completions SHELL` and `dsm man`: generated from the clap definitions (issue 30).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]
use crate::support::TestProject;

/// Every top-level command name, from `dsm --help`.
fn commands(p: &TestProject) -> Vec<String> {
    let help = p.dsm(&["--help"]).stdout;
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn issue_30_bash_completion_is_valid_bash_and_knows_every_command() {
    let p = TestProject::empty();
    let out = p.dsm(&["completions", "bash"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let script = p.root().join("dsm.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = crate::support::run({
        let mut c = std::process::Command::new("bash");
        c.arg("-n").arg(&script);
        c
    });
    assert_eq!(check.code, 0, "bash -n: {}", check.stderr);
    let names = commands(&p);
    assert!(names.len() > 20, "{names:?}");
    for name in &names {
        assert!(out.stdout.contains(name.as_str()), "`{name}` missing");
    }
    // Sourcing it and asking for completions of `dsm sy` offers `sync`.
    let complete = crate::support::run({
        let mut c = std::process::Command::new("bash");
        c.arg("-c").arg(format!(
            "source {}; COMP_WORDS=(dsm sy); COMP_CWORD=1; COMP_LINE='dsm sy'; COMP_POINT=6; _dsm dsm sy dsm; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ));
        c
    });
    assert_eq!(complete.code, 0, "{}", complete.stderr);
    assert_eq!(complete.stdout.trim(), "sync", "{}", complete.stderr);
}

#[test]
fn issue_30_completions_for_every_shell() {
    let p = TestProject::empty();
    for (shell, marker) in [
        ("zsh", "#compdef dsm"),
        ("fish", "complete -c dsm"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = p.dsm(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        assert!(out.stdout.contains(marker), "{shell}");
        assert!(out.stdout.contains("sync"), "{shell}");
    }
    let out = p.dsm(&["completions", "tcsh"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("accepted values: bash"),
        "{}",
        out.stderr
    );
}

#[test]
fn issue_30_the_man_page_names_every_command_and_global_flag() {
    let p = TestProject::empty();
    let out = p.dsm(&["man"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with(".ie"), "{}", &out.stdout[..200]);
    assert!(out.stdout.contains(".TH dsm 1"), "not a section 1 page");
    for name in commands(&p) {
        assert!(
            out.stdout.contains(&format!("dsm\\-{name}(1)")),
            "`{name}` missing from the man page"
        );
    }
    for flag in ["cwd", "environment", "database\\-uri", "format"] {
        assert!(out.stdout.contains(&format!("\\-\\-{flag}")), "--{flag}");
    }
    // One page per command and subcommand, for `man dsm-config-list`.
    let out = p.dsm(&["man", "--output-dir", "man1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for page in [
        "dsm.1",
        "dsm-sync.1",
        "dsm-config-list.1",
        "dsm-completions.1",
    ] {
        assert!(p.root().join("man1").join(page).is_file(), "{page}");
    }
}
