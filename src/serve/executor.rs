//! The runs `dsm serve` starts and the event stream: one adapter to the library's run call (the
//! flow `dsm sync NAME` runs), the runs in progress with their cancellation tokens and progress
//! counters, stopping them, and the broadcast channel behind `GET /api/events`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::orchestrate::{Blocks, Flow};
use crate::pipeline::{CancelReason, CancelToken};
use crate::progress::{Progress, ProgressMode};
use crate::project::{Environment, Project};
use crate::runner::{self, RunOptions};
use crate::store::{RunId, StateId, Store};

/// Events a slow `GET /api/events` client may fall behind by before it misses some.
pub const EVENT_BUFFER: usize = 1024;
/// How often `run_progress` events go out while a run moves records.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long stopped runs get to let their loaders flush before every plugin is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits, after killing, for the runs to record their end.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// One server-sent event: its name and its JSON data.
#[derive(Debug, Clone)]
pub struct Event {
    /// `run_started`, `run_progress`, `run_finished`, `source_status`, `install_progress`.
    pub kind: &'static str,
    /// The event's document.
    pub data: Value,
    /// The source it is about (only callers who see it get it).
    pub source: Option<String>,
}

/// Runs a flow with the library's run path: the one call the server makes into the runner
/// (`dsm sync NAME` reaches the same `runner` functions through `commands::sync::run_flow`).
/// A job's tasks run one after another and stop at the first failure; the run id in `opts`
/// goes to the first run.
pub fn execute(
    project: &Project,
    env: Option<&Environment>,
    flow: &Flow,
    opts: &RunOptions,
) -> Result<Vec<runner::RunReport>> {
    match &flow.blocks {
        Blocks::Pair { extractor, loader } => {
            let pair = runner::Flow {
                extractor: extractor.clone(),
                mappers: Vec::new(),
                loader: loader.clone(),
            };
            runner::run_flow(project, env, &pair, opts).map(|r| vec![r])
        }
        Blocks::Tasks(tasks) => {
            let mut all = Vec::new();
            let mut opts = opts.clone();
            for task in tasks {
                let blocks: Vec<String> = task.split_whitespace().map(str::to_owned).collect();
                let reports = runner::run_blocks(project, env, &blocks, &opts)?;
                opts.run_id = None;
                let failed = reports
                    .iter()
                    .any(|r| r.status != crate::pipeline::RunStatus::Success);
                all.extend(reports);
                if failed || opts.cancel.as_ref().is_some_and(|c| c.reason().is_some()) {
                    break;
                }
            }
            Ok(all)
        }
    }
}

/// The run lock a flow's run takes, when it is an extractor/loader pair (a job's tasks take
/// theirs one at a time).
pub fn lock_of(env: Option<&Environment>, flow: &Flow, opts: &RunOptions) -> Option<StateId> {
    match &flow.blocks {
        Blocks::Pair { extractor, loader } => Some(runner::state_id_for(
            env,
            &runner::Flow {
                extractor: extractor.clone(),
                mappers: Vec::new(),
                loader: loader.clone(),
            },
            opts,
        )),
        Blocks::Tasks(_) => None,
    }
}

/// A run in progress, started by this server.
#[derive(Debug)]
struct Active {
    source: String,
    cancel: CancelToken,
    progress: Progress,
    thread: Option<JoinHandle<()>>,
}

/// Why a run was not started.
#[derive(Debug)]
pub enum Refused {
    /// This server already runs the source (the run id).
    Running(String),
    /// The server is shutting down.
    ShuttingDown,
}

/// What a run needs to start.
#[derive(Debug)]
pub struct RunRequest {
    /// The project as loaded.
    pub project: Arc<Project>,
    /// The active environment.
    pub environment: Option<Environment>,
    /// The flow.
    pub flow: Flow,
    /// The source the run was asked for.
    pub source: String,
    /// Its options (the run id is filled in here).
    pub options: RunOptions,
}

/// The runs this server started, and the event channel.
#[derive(Debug)]
pub struct Runs {
    active: Mutex<HashMap<String, Active>>,
    events: broadcast::Sender<Event>,
    store: Arc<dyn Store>,
    stopping: std::sync::atomic::AtomicBool,
}

impl Runs {
    /// No runs yet.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Runs {
            active: Mutex::new(HashMap::new()),
            events: broadcast::channel(EVENT_BUFFER).0,
            store,
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends an event about the source its `source` field names to every listener (none
    /// listening is fine).
    pub fn emit(&self, kind: &'static str, data: Value) {
        let source = data["source"].as_str().map(str::to_owned);
        self.emit_for(kind, source, data);
    }

    /// Sends an event about `source` (for events whose document does not name it).
    pub fn emit_for(&self, kind: &'static str, source: Option<String>, data: Value) {
        let _ = self.events.send(Event { kind, data, source });
    }

    /// The source of a run this server runs.
    pub fn source_of(&self, run_id: &str) -> Option<String> {
        self.lock().get(run_id).map(|a| a.source.clone())
    }

    /// A new listener of the event stream.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The run this server runs for `source`, if any.
    pub fn running_for(&self, source: &str) -> Option<String> {
        self.lock()
            .iter()
            .find(|(_, a)| a.source == source)
            .map(|(id, _)| id.clone())
    }

    /// Starts a run on its own thread; returns its id at once.
    pub fn start(self: &Arc<Self>, mut request: RunRequest) -> std::result::Result<RunId, Refused> {
        let mut active = self.lock();
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Refused::ShuttingDown);
        }
        if let Some((id, _)) = active.iter().find(|(_, a)| a.source == request.source) {
            return Err(Refused::Running(id.clone()));
        }
        let run_id = RunId::generate();
        let cancel = CancelToken::new();
        let progress = Progress::with_output(
            ProgressMode::Quiet,
            indicatif::ProgressDrawTarget::hidden(),
            Box::new(std::io::sink()),
        );
        request.options.run_id = Some(run_id.to_string());
        request.options.cancel = Some(cancel.clone());
        request.options.progress = Some(progress.clone());
        request.options.live_progress = false;
        let runs = Arc::clone(self);
        let id = run_id.clone();
        let source = request.source.clone();
        let thread = std::thread::Builder::new()
            .name("dsm-serve-run".into())
            .spawn(move || {
                let outcome = execute(
                    &request.project,
                    request.environment.as_ref(),
                    &request.flow,
                    &request.options,
                );
                runs.finished(&id, &request.source, outcome);
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "could not start a thread for a run");
                return Err(Refused::ShuttingDown);
            }
        };
        active.insert(
            run_id.to_string(),
            Active {
                source: source.clone(),
                cancel,
                progress,
                thread: Some(thread),
            },
        );
        drop(active);
        self.emit(
            "run_started",
            json!({"run_id": run_id.as_str(), "source": source}),
        );
        self.emit(
            "source_status",
            json!({"source": source, "status": "syncing"}),
        );
        Ok(run_id)
    }

    fn finished(&self, run_id: &RunId, source: &str, outcome: Result<Vec<runner::RunReport>>) {
        if let Err(e) = &outcome {
            tracing::warn!(run_id = %run_id, source, error = %e.message(), "a run started over HTTP failed");
        }
        // The run history's word for how it ended; a run refused before it was recorded
        // (the lock taken in the meantime, a plugin that does not resolve) failed.
        let status = match self.store.get_run(run_id) {
            Ok(Some(run)) => run.status.as_str().to_owned(),
            _ => "failed".to_owned(),
        };
        if let Some(a) = self.lock().get(run_id.as_str()) {
            self.send_progress(run_id.as_str(), source, &a.progress, &mut BTreeMap::new());
        }
        self.emit_for(
            "run_finished",
            Some(source.to_owned()),
            json!({"run_id": run_id.as_str(), "status": status}),
        );
        if let Ok(states) = crate::registry::status::source_statuses(self.store.as_ref(), &[source])
            && let Some(state) = states.first()
        {
            self.emit(
                "source_status",
                json!({"source": source, "status": state.status.as_str()}),
            );
        }
        // The thread handle stays behind for shutdown to wait on until the entry goes.
        self.lock().remove(run_id.as_str());
    }

    /// Asks a run this server started to stop (the loader still flushes; the run is recorded
    /// as `killed`). Returns whether this server runs it.
    pub fn stop(&self, run_id: &str) -> bool {
        match self.lock().get(run_id) {
            Some(a) => {
                a.cancel.cancel(CancelReason::Terminated);
                true
            }
            None => false,
        }
    }

    fn send_progress(
        &self,
        run_id: &str,
        source: &str,
        progress: &Progress,
        sent: &mut BTreeMap<(String, String), u64>,
    ) {
        for (stream, counts) in progress.counts() {
            let key = (run_id.to_owned(), stream.clone());
            if sent.get(&key) == Some(&counts.records) {
                continue;
            }
            sent.insert(key, counts.records);
            self.emit_for(
                "run_progress",
                Some(source.to_owned()),
                json!({"run_id": run_id, "stream": stream, "records": counts.records}),
            );
        }
    }

    /// Sends `run_progress` for every stream whose count moved, once a second, until the
    /// server stops.
    pub fn spawn_progress(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            let mut sent: BTreeMap<(String, String), u64> = BTreeMap::new();
            loop {
                tick.tick().await;
                let Some(runs) = weak.upgrade() else { return };
                let snapshot: Vec<(String, String, Progress)> = runs
                    .lock()
                    .iter()
                    .map(|(id, a)| (id.clone(), a.source.clone(), a.progress.clone()))
                    .collect();
                sent.retain(|(id, _), _| snapshot.iter().any(|(s, _, _)| s == id));
                for (id, source, progress) in &snapshot {
                    runs.send_progress(id, source, progress, &mut sent);
                }
            }
        });
    }

    /// Shutdown begins: refuses new runs and asks every run this server started to stop
    /// (the loader still flushes). Returns the runs' tokens.
    pub fn cancel_all(&self) -> Vec<CancelToken> {
        let first = !self
            .stopping
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        let cancels: Vec<CancelToken> = self.lock().values().map(|a| a.cancel.clone()).collect();
        if first && !cancels.is_empty() {
            tracing::warn!(
                runs = cancels.len(),
                "stopping the runs this server started"
            );
            for c in &cancels {
                c.cancel(CancelReason::Terminated);
            }
        }
        cancels
    }

    /// Shutdown: [`Self::cancel_all`], then kills the runs' plugins after [`STOP_GRACE`], and
    /// waits (bounded) until each run has recorded its end. Blocking.
    pub fn stop_all(&self) {
        let cancels = self.cancel_all();
        if cancels.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut escalated = false;
        loop {
            let left: Vec<JoinHandle<()>> = {
                let mut active = self.lock();
                if active.is_empty() {
                    break;
                }
                active
                    .values_mut()
                    .filter_map(|a| a.thread.take())
                    .collect()
            };
            if left.is_empty() {
                // Joined already; the entries go as the runs record their end.
                if started.elapsed() >= STOP_GRACE + STOP_WAIT {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            for handle in left {
                // Joined off the map's lock: the run's own end takes it.
                while !handle.is_finished() {
                    if !escalated && started.elapsed() >= STOP_GRACE {
                        escalated = true;
                        for c in &cancels {
                            c.cancel(CancelReason::Terminated);
                        }
                    }
                    if started.elapsed() >= STOP_GRACE + STOP_WAIT {
                        tracing::error!("a run did not stop in time; leaving it");
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = handle.join();
            }
        }
    }
}
