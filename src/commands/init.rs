//! `dsm init [DIR]`: creates a project with dev, staging and prod environments.

use std::path::PathBuf;

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::project::{PRIVATE_DIR, PROJECT_FILE, edit};

/// Arguments of `dsm init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to create the project (default: the current directory).
    pub dir: Option<PathBuf>,
}

const GITIGNORE: &str = "\
# dsm's private folder: system store, run logs, plugin environments
/.dsm/
# Meltano's folder, when the project is also run with Meltano
/.meltano/
# secrets
.env
";

/// The `files` value the next steps show for `tap-csv`: one stream read from `users.csv`.
const EXAMPLE_FILES: &str = r#"[{"entity": "users", "path": "users.csv", "keys": ["id"]}]"#;

/// Runs `dsm init`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let cwd = ctx.cwd()?;
    let dir = match args.dir {
        // `dsm init .` names the folder itself, not `/path/.`.
        Some(d) => normalize(&cwd.join(d)),
        None => cwd.clone(),
    };
    let file = dir.join(PROJECT_FILE);
    if file.exists() {
        return Err(
            Error::config(format!("`{}` already exists", file.display()))
                .hint("dsm init never overwrites a project; pick an empty directory"),
        );
    }
    crate::files::create_private_dir(&dir.join(PRIVATE_DIR))?;
    let project_id = uuid::Uuid::new_v4();
    let text = format!(
        "default_environment: dev\n\
         project_id: {project_id}\n\
         send_anonymous_usage_stats: false\n\
         environments:\n\
         - name: dev\n\
         - name: staging\n\
         - name: prod\n\
         plugins:\n  extractors: []\n  loaders: []\n"
    );
    // A project file is shared (committed, read by Meltano): the usual 0644, not owner-only.
    edit::write_new_shared(&file, &text)?;
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        edit::write_new_shared(&gitignore, GITIGNORE)?;
    }
    ctx.printer
        .notice(format!("created a dsm project in `{}`", dir.display()));
    let mut steps = Vec::new();
    if ctx.global.cwd.is_some() {
        // The shell is not where `--cwd` pointed: the whole path.
        steps.push(format!("cd {}", shell_word(&dir.display().to_string())));
    } else if dir != cwd {
        let shown = dir.strip_prefix(&cwd).unwrap_or(&dir);
        steps.push(format!("cd {}", shell_word(&shown.display().to_string())));
    }
    steps.push("dsm add tap-csv".to_string());
    steps.push(format!("dsm config set tap-csv files '{EXAMPLE_FILES}'"));
    steps.push("dsm validate".to_string());
    let mut text = String::from("next steps (each line works as it is):");
    for s in steps {
        text.push_str("\n  ");
        text.push_str(&s);
    }
    ctx.printer.notice(text);
    Ok(())
}

/// `path` without `.` components and with `..` applied (no file-system access).
fn normalize(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `s` quoted for a POSIX shell when it holds anything but plain path characters.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
