use crate::support::TestProject;

#[test]
fn init_creates_a_valid_project_with_three_environments() {
    let p = TestProject::empty();
    let out = p.dsm(&["init", "proj"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let root = p.root().join("proj");
    assert!(root.join(".dsm").is_dir());
    assert!(
        std::fs::read_to_string(root.join(".gitignore"))
            .unwrap()
            .contains("/.dsm/")
    );
    let yml = std::fs::read_to_string(root.join("meltano.yml")).unwrap();
    assert!(yml.contains("default_environment: dev\n"), "{yml}");
    for env in ["dev", "staging", "prod"] {
        assert!(yml.contains(&format!("- name: {env}\n")), "{yml}");
    }
    let out = p.dsm(&["--cwd", "proj", "validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn init_refuses_to_overwrite_a_project() {
    let p = TestProject::new("version: 1\n");
    let before = p.read("meltano.yml");
    let out = p.dsm(&["init"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(p.read("meltano.yml"), before);
}

// Issue 30: the next step printed `dsm config tap-csv set ...` (not dsm's syntax), the file said
// the deprecated `version: 1`, was owner-only, and `dsm init .` named the folder `/path/.`.
#[test]
fn issue_30_init_next_steps_work_when_pasted() {
    use std::os::unix::fs::PermissionsExt as _;
    let p = TestProject::empty();
    let out = p.dsm(&["init", "./proj/."]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let root = p.root().join("proj");
    let shown = out.stderr.replace(&p.root().display().to_string(), "[TMP]");
    insta::assert_snapshot!(shown, @r#"
    created a dsm project in `[TMP]/proj`
    next steps (each line works as it is):
      cd proj
      dsm add tap-csv
      dsm config set tap-csv files '[{"entity": "users", "path": "users.csv", "keys": ["id"]}]'
      dsm validate
    "#);
    let yml = std::fs::read_to_string(root.join("meltano.yml")).unwrap();
    assert!(!yml.contains("version:"), "{yml}");
    for file in ["meltano.yml", ".gitignore"] {
        let mode = std::fs::metadata(root.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{file}");
    }
    // Paste the steps into a shell, as a user would, with this dsm first on PATH.
    let steps: Vec<&str> = out
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("next steps"))
        .skip(1)
        .map(str::trim)
        .collect();
    let dsm = std::path::Path::new(env!("CARGO_BIN_EXE_dsm"));
    let path = format!(
        "{}:{}",
        dsm.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-ec")
        .arg(steps.join("\n"))
        .current_dir(p.root())
        .env("PATH", path)
        .env("XDG_CONFIG_HOME", p.root().join(".test-config"));
    crate::support::clean_env(&mut cmd);
    let run = crate::support::run(cmd);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let yml = std::fs::read_to_string(root.join("meltano.yml")).unwrap();
    assert!(yml.contains("name: tap-csv"), "{yml}");
    assert!(yml.contains("users.csv"), "{yml}");
    // Meltano 4 does not warn about the file (no deprecated `version`).
    let mode = std::fs::metadata(root.join("meltano.yml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}
