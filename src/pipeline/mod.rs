//! The pipeline: extractor → (native transforms, mapper processes) → loader, as tokio tasks
//! joined by bounded channels; the loader's STATE handed to the caller as it arrives.
//!
//! The hot path never parses a record unless a transform touches its stream: each line's
//! envelope is scanned, counted and passed on as raw bytes, batched into large writes. State is
//! saved only from what the loader prints after flushing, never from the extractor (whose STATE
//! messages are forwarded to the loader in their place in the stream).

mod segment;
#[cfg(target_os = "linux")]
mod shadow;
mod state;
mod supervisor;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use segment::StreamCounts;

use crate::error::{Error, ErrorKind};
use crate::plugin::{
    self, PluginExit, PluginProcess, PluginSpec, RunDir, RunLog, StderrTail, StopRequest,
};
use crate::singer::codec::DEFAULT_MAX_LINE;
use crate::transform::Transform;

/// Runtime knobs of one run.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Longest accepted line, in bytes (Meltano's `elt.buffer_size`).
    pub max_line: usize,
    /// Count, log and skip bad lines instead of failing the run.
    pub lenient: bool,
    /// Pass on RECORD messages of a stream whose SCHEMA has not been seen (fails by default).
    pub allow_record_before_schema: bool,
    /// Time between SIGTERM and SIGKILL when stopping a plugin.
    pub grace: Duration,
    /// After a cancellation, how long the loader may take to flush before it is stopped too.
    pub drain_timeout: Duration,
    /// Stop the run (gracefully) after this long: `--timeout`.
    pub timeout: Option<Duration>,
    /// Lines are batched into writes of about this many bytes.
    pub chunk_bytes: usize,
    /// How many chunks may wait between two stages.
    pub channel_chunks: usize,
    /// Pipe buffer size asked of the kernel for the pipes dsm reads and writes (0: leave as is).
    pub pipe_bytes: usize,
    /// Between two plugins with no native transform, pass checked lines on by tee/splice
    /// (Linux): the kernel moves the pages and dsm copies nothing out (off: plain writes).
    pub zero_copy: bool,
    /// The per-run log file that receives every plugin's stderr.
    pub log: Option<RunLog>,
    /// The live display the extractor's records are counted into (on a terminal).
    pub progress: Option<crate::progress::Progress>,
    /// The loader declares the `batch` capability: BATCH messages that no transform reads are
    /// relayed to it; otherwise dsm reads their files and sends RECORD messages.
    pub loader_takes_batches: bool,
    /// The run the plugins belong to, set in their environment as
    /// [`crate::envvars::OWNER_RUN`] (see [`plugin::sys::kill_leftovers`]).
    pub owner_run: Option<String>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            max_line: DEFAULT_MAX_LINE,
            lenient: false,
            allow_record_before_schema: false,
            grace: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(60),
            timeout: None,
            chunk_bytes: 256 * 1024,
            channel_chunks: 4,
            pipe_bytes: 1024 * 1024,
            zero_copy: true,
            log: None,
            progress: None,
            loader_takes_batches: true,
            owner_run: None,
        }
    }
}

/// One step between extractor and loader.
pub enum Stage {
    /// A transform run inside dsm.
    Transform(Box<dyn Transform>),
    /// A Singer mapper run as a process.
    Mapper(Box<PluginSpec>),
}

/// What to run: an extractor, the steps between, a loader.
pub struct Pipeline {
    /// The tap.
    pub extractor: PluginSpec,
    /// Native transforms and mappers, in order.
    pub stages: Vec<Stage>,
    /// The target.
    pub loader: PluginSpec,
    /// Runtime knobs.
    pub options: PipelineOptions,
}

/// Receives each state the loader confirmed, as it arrives; the caller commits it to the store.
///
/// Called on the task driving the run: keep it short (one SQLite transaction). An error stops
/// the run gracefully and fails it.
pub trait StateSink {
    /// A non-empty JSON object the loader printed after flushing.
    fn on_state(&mut self, state: &Value) -> Result<(), Error>;

    /// Several such objects that arrived together, in order. A sink may make them durable
    /// at once; by default each goes to [`Self::on_state`].
    fn on_states(&mut self, states: &[Value]) -> Result<(), Error> {
        states.iter().try_for_each(|s| self.on_state(s))
    }
}

impl<F> StateSink for F
where
    F: FnMut(&Value) -> Result<(), Error>,
{
    fn on_state(&mut self, state: &Value) -> Result<(), Error> {
        self(state)
    }
}

/// Why a run was cancelled from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// SIGINT (Ctrl-C): exit 130.
    Interrupted,
    /// SIGTERM: exit 143.
    Terminated,
}

/// Cancels a run: the first call stops the extractor and lets the loader flush; a second call
/// stops every plugin (SIGTERM, then SIGKILL).
#[derive(Debug, Clone)]
pub struct CancelToken {
    tx: Arc<watch::Sender<(Option<CancelReason>, u32)>>,
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    /// A token nobody has triggered yet.
    pub fn new() -> Self {
        CancelToken {
            tx: Arc::new(watch::channel((None, 0)).0),
        }
    }

    /// Asks the run to stop.
    pub fn cancel(&self, reason: CancelReason) {
        self.tx.send_modify(|(r, n)| {
            r.get_or_insert(reason);
            *n += 1;
        });
    }

    /// The first reason given, once cancelled.
    pub fn reason(&self) -> Option<CancelReason> {
        self.tx.borrow().0
    }

    fn subscribe(&self) -> watch::Receiver<(Option<CancelReason>, u32)> {
        self.tx.subscribe()
    }

    /// Cancels this token on SIGINT and SIGTERM (each signal again escalates), until the
    /// returned task is aborted. Needs a tokio runtime.
    pub fn cancel_on_signals(&self) -> std::io::Result<JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let token = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = int.recv() => token.cancel(CancelReason::Interrupted),
                    Some(()) = term.recv() => token.cancel(CancelReason::Terminated),
                    else => break,
                }
            }
        }))
    }
}

/// The end of the warning a run whose loader confirmed no STATE carries (after the loader's
/// label); callers that say it in their own words recognise it by this text.
pub const NO_STATE_WARNING: &str = "emitted no STATE message: the bookmark did not advance";

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every plugin succeeded and all input reached the loader.
    Success,
    /// A plugin, a line or the state sink failed.
    Failed,
    /// Cancelled by SIGINT.
    Interrupted,
    /// Cancelled by SIGTERM.
    Terminated,
    /// `--timeout` expired.
    TimedOut,
}

impl RunStatus {
    /// The status as it is written in run history and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Terminated => "terminated",
            RunStatus::TimedOut => "timed_out",
        }
    }
}

impl RunStatus {
    /// The process exit code for this outcome (0, 1, 130, 143, 124).
    pub fn exit_code(self) -> u8 {
        match self {
            RunStatus::Success => 0,
            RunStatus::Failed => ErrorKind::Failed.exit_code(),
            RunStatus::Interrupted => ErrorKind::Interrupted.exit_code(),
            RunStatus::Terminated => ErrorKind::Terminated.exit_code(),
            RunStatus::TimedOut => ErrorKind::Timeout.exit_code(),
        }
    }
}

/// Everything the caller needs for run history and for the user.
#[derive(Debug)]
pub struct Outcome {
    /// How the run ended.
    pub status: RunStatus,
    /// The first failure (also set for cancellations), with the tail of the plugin's stderr.
    pub error: Option<Error>,
    /// How each plugin ended, in pipeline order (missing for plugins never started).
    pub exits: Vec<PluginExit>,
    /// Records and bytes per stream, as the extractor wrote them.
    pub streams: BTreeMap<String, StreamCounts>,
    /// Lines the extractor wrote.
    pub lines: u64,
    /// Bad lines skipped in lenient mode.
    pub bad_lines: u64,
    /// STATE messages the extractor wrote.
    pub extractor_states: u64,
    /// RECORD messages passed to the loader (after mappers and transforms: validation,
    /// filters and stream maps may drop or add records).
    pub records_sent: u64,
    /// Records the loader confirmed: those sent before the latest STATE it emitted back.
    pub records_confirmed: u64,
    /// States passed to the sink.
    pub states_committed: u64,
    /// The last state passed to the sink.
    pub last_state: Option<Value>,
    /// Things the user should know even when the run succeeded.
    pub warnings: Vec<String>,
    /// Wall-clock time of the run.
    pub duration: Duration,
}

impl Outcome {
    /// Whether the loader confirmed at least one state (the bookmark advanced).
    pub fn state_advanced(&self) -> bool {
        self.states_committed > 0
    }

    /// `Ok` on success, else the error with the kind matching the status (exit 1/124/130/143).
    pub fn into_result(self) -> Result<Outcome, Error> {
        let kind = match self.status {
            RunStatus::Success => return Ok(self),
            RunStatus::Failed => ErrorKind::Failed,
            RunStatus::Interrupted => ErrorKind::Interrupted,
            RunStatus::Terminated => ErrorKind::Terminated,
            RunStatus::TimedOut => ErrorKind::Timeout,
        };
        let mut this = self;
        let error = this
            .error
            .take()
            .unwrap_or_else(|| Error::failed("the run failed"));
        Err(error.with_kind(kind))
    }
}

/// Messages from the tasks to the driver.
#[derive(Debug)]
enum Event {
    /// Process `i` exited.
    Exited(usize, PluginExit),
    /// All input of process `i` was written and its stdin is being closed.
    InputClosed(usize),
    /// Process `i` stopped reading its stdin.
    InputBroken(usize),
    /// The reader of process `i`'s stdout finished.
    SegmentDone(usize, segment::SegmentReport),
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Process `i` exited but its stdout is still open (a grandchild holds it).
    SegmentEof(usize),
    /// The output is still open after the group was killed: give up on it.
    SegmentAbort(usize),
    /// The loader had its time to flush after a cancellation.
    Drain,
    /// Everything exited; the last readers get this long.
    Final,
}

/// Runs the pipeline to the end and reports how it went; never hangs when a process dies.
///
/// Plugin configs are written to `run_dir`, which the caller drops (removing it) afterwards.
pub async fn run(
    pipeline: Pipeline,
    run_dir: &RunDir,
    sink: &mut dyn StateSink,
    cancel: &CancelToken,
) -> Outcome {
    let started = Instant::now();
    let Pipeline {
        extractor,
        stages,
        loader,
        options,
    } = pipeline;

    // Chain order: extractor, mappers, loader; transforms[i] sit between process i and i+1.
    let mut specs = vec![extractor];
    let mut transforms: Vec<Vec<Box<dyn Transform>>> = vec![Vec::new()];
    for stage in stages {
        match stage {
            Stage::Transform(t) => transforms.last_mut().expect("never empty").push(t),
            Stage::Mapper(spec) => {
                specs.push(*spec);
                transforms.push(Vec::new());
            }
        }
    }
    specs.push(loader);
    if let Some(run) = &options.owner_run {
        for spec in &mut specs {
            spec.env
                .insert(crate::envvars::OWNER_RUN.to_owned(), run.clone());
        }
    }
    let n = specs.len();
    let last = n - 1;

    let mut outcome = Outcome {
        status: RunStatus::Failed,
        error: None,
        exits: Vec::new(),
        streams: BTreeMap::new(),
        lines: 0,
        bad_lines: 0,
        extractor_states: 0,
        records_sent: 0,
        records_confirmed: 0,
        states_committed: 0,
        last_state: None,
        warnings: Vec::new(),
        duration: Duration::ZERO,
    };

    // Start downstream first, so nothing writes into a process that does not exist yet.
    let mut procs: Vec<Option<PluginProcess>> = (0..n).map(|_| None).collect();
    for i in (0..n).rev() {
        match plugin::spawn(&specs[i], run_dir, i > 0, options.log.as_ref()) {
            Ok(p) => procs[i] = Some(p),
            Err(error) => {
                for p in procs.iter_mut().flatten() {
                    outcome.exits.push(p.stop(options.grace).await);
                }
                outcome.error = Some(error);
                outcome.duration = started.elapsed();
                return outcome;
            }
        }
    }
    let mut procs: Vec<PluginProcess> = procs.into_iter().map(|p| p.expect("spawned")).collect();
    let tails: Vec<StderrTail> = procs.iter().map(PluginProcess::stderr_tail).collect();
    let pids: Vec<u32> = procs.iter().map(PluginProcess::pid).collect();

    let (events_tx, events) = mpsc::channel::<Event>(16 + 4 * n);
    let (state_tx, states) = mpsc::channel::<Value>(64);
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut readers: Vec<JoinHandle<()>> = Vec::new();

    // Segments: stdout of i → stdin of i+1.
    let last_segment = transforms.len();
    let ledger = std::sync::Arc::new(state::StateLedger::default());
    for (i, chain) in transforms.into_iter().enumerate() {
        let stdout = procs[i].take_stdout().expect("stdout was piped");
        let stdin = procs[i + 1].take_stdin().expect("stdin was piped");
        if options.pipe_bytes > 0 {
            plugin::sys::grow_pipe(&stdout, options.pipe_bytes);
            plugin::sys::grow_pipe(&stdin, options.pipe_bytes);
        }
        #[cfg(target_os = "linux")]
        let (stdout, tee, sink) = if options.zero_copy && chain.is_empty() {
            match shadow::open(stdout, stdin, options.pipe_bytes) {
                Ok((tee, splice)) => (None, Some(tee), segment::Sink::Spliced(splice)),
                Err(e) => {
                    // Only fd exhaustion gets here; the pipes are spent, so the run stops.
                    for p in procs.iter_mut() {
                        outcome.exits.push(p.stop(options.grace).await);
                    }
                    outcome.error = Some(
                        Error::failed(format!(
                            "could not join {} to the next plugin: {e}",
                            specs[i].label()
                        ))
                        .hint("raise the open-file limit (ulimit -n) and run again"),
                    );
                    outcome.duration = started.elapsed();
                    return outcome;
                }
            }
        } else {
            (Some(stdout), None, segment::Sink::Plain(stdin))
        };
        #[cfg(not(target_os = "linux"))]
        let (stdout, sink) = (Some(stdout), segment::Sink::Plain(stdin));
        let (tx, rx) = mpsc::channel::<segment::Chunk>(options.channel_chunks.max(1));
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>(options.channel_chunks.max(1) + 1);
        let reader = segment::Reader {
            index: i,
            label: specs[i].label(),
            stdout,
            #[cfg(target_os = "linux")]
            tee,
            transforms: chain,
            max_line: options.max_line,
            lenient: options.lenient,
            records_need_schema: !options.allow_record_before_schema,
            chunk_bytes: options.chunk_bytes.max(1),
            tx,
            recycled: recycle_rx,
            events: events_tx.clone(),
            // Only the extractor's output is counted (what the display shows).
            progress: if i == 0 {
                options.progress.clone()
            } else {
                None
            },
            shown: BTreeMap::new(),
            expand_all_batches: i + 1 == last_segment && !options.loader_takes_batches,
            ledger: (i + 1 == last_segment).then(|| ledger.clone()),
        };
        readers.push(tokio::spawn(reader.run()));
        tasks.push(tokio::spawn(segment::write(
            i + 1,
            rx,
            sink,
            recycle_tx,
            events_tx.clone(),
        )));
    }
    let loader_stdout = procs[last].take_stdout().expect("stdout was piped");
    let state_task = tokio::spawn(state::read_loader_output(
        loader_stdout,
        specs[last].label(),
        options.max_line,
        state_tx,
    ));

    // One supervisor per process: waits for its exit, stops it on request.
    let mut stops: Vec<watch::Sender<StopRequest>> = Vec::new();
    for (i, mut proc) in procs.into_iter().enumerate() {
        let (stop_tx, mut stop_rx) = watch::channel(StopRequest::None);
        stops.push(stop_tx);
        let events = events_tx.clone();
        let grace = options.grace;
        tasks.push(tokio::spawn(async move {
            let exit = proc.wait_or_stop(&mut stop_rx, grace).await;
            let _ = events.send(Event::Exited(i, exit)).await;
        }));
    }
    drop(events_tx);

    let wiring = supervisor::Wiring {
        specs,
        tails,
        pids,
        stops,
        readers,
        state_task,
        ledger,
        tasks,
    };
    supervisor::Supervisor::new(wiring, options, sink, started, outcome)
        .drive(events, states, cancel)
        .await
}

fn begin_cancel(
    cancelled: &mut Option<RunStatus>,
    status: RunStatus,
    count: u32,
    timers: &mut Vec<(tokio::time::Instant, Timer)>,
    options: &PipelineOptions,
) {
    if cancelled.is_none() {
        *cancelled = Some(status);
        tracing::info!(
            ?status,
            "stopping the extractor; the loader may flush what it has"
        );
        timers.push((
            tokio::time::Instant::now() + options.drain_timeout,
            Timer::Drain,
        ));
    } else if count > 1 {
        tracing::info!("stopping every plugin");
    }
}

fn cancel_error(status: RunStatus, timeout: Option<Duration>) -> Error {
    match status {
        RunStatus::Interrupted => Error::new(ErrorKind::Interrupted, "the run was interrupted"),
        RunStatus::Terminated => Error::new(ErrorKind::Terminated, "the run was terminated"),
        RunStatus::TimedOut => Error::new(
            ErrorKind::Timeout,
            format!(
                "the run did not finish within its timeout of {}s",
                timeout.map_or(0, |t| t.as_secs())
            ),
        ),
        RunStatus::Success | RunStatus::Failed => Error::failed("the run failed"),
    }
    .hint("the bookmark advanced only as far as the loader confirmed")
}
