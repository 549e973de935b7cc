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
