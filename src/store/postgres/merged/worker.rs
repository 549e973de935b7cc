//! The connection of a resolver's merged-stream tables and the thread that drives it: jobs run
//! in the order they are handed over, answered ([`Worker::call`], [`Worker::ask`]) or not
//! ([`Worker::send`]); a job nobody waited for that fails makes every later job fail.

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;

use postgres::{Client, Statement};

use super::Names;
use super::writes::sender_id;
use crate::error::{Error, Result};
use crate::store::postgres::PgTarget;

/// The connection as its thread holds it.
pub(super) struct Conn {
    pub(super) client: Client,
    /// Whether a transaction is open (a resolver's batch).
    pub(super) in_tx: bool,
    /// Statements prepared in the open transaction, by name: closed before it ends, since a
    /// transaction-pooling pooler may hand the next one another server connection.
    pub(super) prepared: HashMap<&'static str, Statement>,
    /// The open transaction's id in `merge_sends` of the run sending the stream's records.
    pub(super) sender: Option<i64>,
    /// A job sent without waiting for it failed (see [`Worker::send`]).
    pub(super) failed: Option<Failure>,
}

/// The failure of a job nobody waited for.
pub(super) enum Failure {
    /// Not reported yet: the next call returns it (and rolls its transaction back).
    Unreported(Error),
    /// Reported: every later call fails, naming it, so no later write of the batch lands
    /// without the ones before it.
    Reported(String),
}

impl Conn {
    /// Fails when a job sent without waiting failed.
    pub(super) fn check(&mut self) -> Result<()> {
        match self.failed.take() {
            None => Ok(()),
            Some(Failure::Unreported(e)) => {
                let _ = self.end(false);
                self.failed = Some(Failure::Reported(e.to_string()));
                Err(e)
            }
            Some(Failure::Reported(text)) => {
                let e = Error::failed(format!(
                    "an earlier write of this merged stream to the PostgreSQL store failed, \
                     and its batch was rolled back: {text}"
                ));
                self.failed = Some(Failure::Reported(text));
                Err(e)
            }
        }
    }

    pub(super) fn begin(&mut self) -> Result<()> {
        if !self.in_tx {
            self.client.batch_execute("BEGIN")?;
            self.in_tx = true;
        }
        Ok(())
    }

    pub(super) fn end(&mut self, commit: bool) -> Result<()> {
        if !self.in_tx {
            return Ok(());
        }
        self.in_tx = false;
        self.prepared.clear();
        self.sender = None;
        if commit {
            self.client.batch_execute("COMMIT")?;
        } else {
            self.client.batch_execute("ROLLBACK")?;
        }
        Ok(())
    }

    /// The statement `name`, prepared once per transaction (`sql` with the schema filled in).
    pub(super) fn statement(
        &mut self,
        name: &'static str,
        n: &Names,
        sql: &str,
    ) -> Result<Statement> {
        if let Some(s) = self.prepared.get(name) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&n.q(sql))?;
        if self.in_tx {
            self.prepared.insert(name, s.clone());
        }
        Ok(s)
    }

    /// The id in `merge_sends` of `run_id` sending records of `stream`, asked for once per
    /// transaction (a confirmation, which may delete the row, forgets it).
    pub(super) fn sender_id(&mut self, n: &Names, stream: &str, run_id: &str) -> Result<i64> {
        if let Some(id) = self.sender {
            return Ok(id);
        }
        let id = sender_id(&mut self.client, n, stream, run_id)?;
        if self.in_tx {
            self.sender = Some(id);
        }
        Ok(id)
    }

    /// Runs `f` in the open transaction, or in one of its own committed when `f` succeeds.
    pub(super) fn tx<T>(&mut self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        if self.in_tx {
            return f(&mut self.client);
        }
        self.begin()?;
        let out = f(&mut self.client);
        self.settle(out)
    }

    /// Ends the open transaction as `out` says: committed with its value, or rolled back with
    /// its error.
    pub(super) fn settle<T>(&mut self, out: Result<T>) -> Result<T> {
        match out {
            Ok(v) => {
                self.end(true)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.end(false);
                Err(e)
            }
        }
    }
}

pub(super) type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The thread that owns the connection.
pub(super) struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

pub(super) fn stopped() -> Error {
    Error::failed("the merged-stream connection to the PostgreSQL store stopped")
}

impl Worker {
    pub(super) fn start(target: &PgTarget) -> Result<Worker> {
        let target = target.clone();
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::sync_channel::<Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("dsm-merge-pg".into())
            .spawn(move || {
                let client = match target.connect() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut conn = Conn {
                    client,
                    in_tx: false,
                    prepared: HashMap::new(),
                    sender: None,
                    failed: None,
                };
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
                // A batch still open is rolled back as the connection closes.
            })
            .map_err(|e| Error::failed(format!("cannot start a thread for merged streams: {e}")))?;
        ready.recv().map_err(|_| stopped())??;
        Ok(Worker {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the connection and waits for its answer.
    pub(super) fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.ask(f)?.wait()
    }

    /// Hands `f` to the connection; its answer comes through [`Answer::wait`]. Jobs run in the
    /// order they were handed over.
    pub(super) fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    ) -> Result<Answer<T>> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.queue(Box::new(move |c| {
            let _ = tx.send(c.check().and_then(|()| f(c)));
        }))?;
        Ok(Answer(rx))
    }

    /// Hands `f` to the connection without waiting for it: a failure is reported by the next
    /// job that answers, and every one after it (see [`Conn::check`]).
    pub(super) fn send(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        self.queue(Box::new(move |c| {
            if c.failed.is_none()
                && let Err(e) = f(c)
            {
                c.failed = Some(Failure::Unreported(e));
            }
        }))
    }

    fn queue(&self, job: Job) -> Result<()> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(stopped)
    }
}

/// The answer of a job handed to the connection.
pub(super) struct Answer<T>(mpsc::Receiver<Result<T>>);

impl<T> Answer<T> {
    pub(super) fn wait(self) -> Result<T> {
        self.0.recv().map_err(|_| stopped())?
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
