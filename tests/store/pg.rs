//! A database of its own per test on the shared PostgreSQL test server (`DSM_TEST_PG_URL`,
//! started by scripts/test.sh), dropped when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};

/// The server's superuser URL.
pub fn server_url() -> String {
    std::env::var("DSM_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "DSM_TEST_PG_URL is not set: the PostgreSQL store tests need a server.\n\
             Run them through scripts/test.sh, or start one with\n  \
             export DSM_TEST_PG_URL=$(scripts/pg-test-cluster.sh start \"$(mktemp -d)\")"
        )
    })
}

/// A fresh database on the test server.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "dsm_store_{tag}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        admin()
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        TestDb { name }
    }

    /// The database's URI as dsm takes it (password included: pass it in the environment).
    pub fn uri(&self, schema: Option<&str>) -> String {
        let url = server_url();
        let (base, _) = url.split_once('?').unwrap_or((&url, ""));
        let (server, _db) = base.rsplit_once('/').unwrap();
        let mut uri = format!("{server}/{}?sslmode=disable", self.name);
        if let Some(s) = schema {
            uri.push_str("&schema=");
            uri.push_str(s);
        }
        uri
    }

    /// A plain client on the database, to look at what the store wrote.
    pub fn client(&self) -> postgres::Client {
        let mut config: postgres::Config = server_url().parse().unwrap();
        config.dbname(&self.name);
        config.connect(postgres::NoTls).unwrap()
    }
}

fn admin() -> postgres::Client {
    let config: postgres::Config = server_url().parse().unwrap();
    config.connect(postgres::NoTls).unwrap()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ));
    }
}
