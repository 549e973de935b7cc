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

/// Runs `dsm init`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let cwd = ctx.cwd()?;
    let dir = match args.dir {
        Some(d) => cwd.join(d),
        None => cwd,
    };
    let file = dir.join(PROJECT_FILE);
    if file.exists() {
        return Err(
            Error::config(format!("`{}` already exists", file.display()))
                .hint("dsm init never overwrites a project; pick an empty directory"),
        );
    }
    crate::project::create_private_dir(&dir.join(PRIVATE_DIR))?;
    let project_id = uuid::Uuid::new_v4();
    let text = format!(
        "version: 1\n\
         default_environment: dev\n\
         project_id: {project_id}\n\
         send_anonymous_usage_stats: false\n\
         environments:\n\
         - name: dev\n\
         - name: staging\n\
         - name: prod\n\
         plugins:\n  extractors: []\n  loaders: []\n"
    );
    edit::write_atomic(&file, &text)?;
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        edit::write_atomic(&gitignore, GITIGNORE)?;
    }
    ctx.printer
        .notice(format!("created a dsm project in `{}`", dir.display()));
    ctx.printer
        .notice("next: `dsm add tap-csv`, then `dsm config tap-csv set ...`, then `dsm validate`");
    Ok(())
}
