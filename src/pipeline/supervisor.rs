//! The driver of a running pipeline: once [`super::run`] has spawned the plugins and joined
//! them with segment tasks, a [`Supervisor`] holds what is known of the run (who exited, who was
//! asked to stop, which segments finished, the first failure, the timers) and reacts to one
//! thing at a time, a method per kind: a plugin's exit, a segment's end, states from the loader,
//! a cancellation, the timeout, and its own timers. [`Supervisor::drive`] is the only loop.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::state::StateLedger;
use super::{
    CancelReason, CancelToken, Event, NO_STATE_WARNING, Outcome, PipelineOptions, RunStatus,
    StateSink, Timer, begin_cancel, cancel_error, segment,
};
use crate::error::Error;
use crate::plugin::{self, PluginExit, PluginSpec, StderrTail, StopRequest};

/// The plugins' side of a running pipeline, as [`super::run`] wired it.
pub(super) struct Wiring {
    /// The plugins in chain order: extractor, mappers, loader.
    pub specs: Vec<PluginSpec>,
    /// Each plugin's last stderr lines (for errors).
    pub tails: Vec<StderrTail>,
    /// Each plugin's pid (its process group).
    pub pids: Vec<u32>,
    /// Each plugin's stop request, read by the task that waits for it.
    pub stops: Vec<watch::Sender<StopRequest>>,
    /// Each segment's reader task (stdout of `i` into the chain towards `i + 1`).
    pub readers: Vec<JoinHandle<()>>,
    /// The reader of the loader's stdout; its result is the warnings it had.
    pub state_task: JoinHandle<Vec<String>>,
    /// What the last segment sent, for counting what the loader confirmed.
    pub ledger: Arc<StateLedger>,
    /// The tasks that only need aborting at the end (writers, exit waiters).
    pub tasks: Vec<JoinHandle<()>>,
}

/// What the driver knows of the run, and how it reacts to each event.
pub(super) struct Supervisor<'s> {
    wiring: Wiring,
    options: PipelineOptions,
    sink: &'s mut dyn StateSink,
    started: Instant,
    /// How each plugin ended, once it did.
    exits: Vec<Option<PluginExit>>,
    /// Whether dsm asked the plugin to stop (its exit is then not a failure of its own).
    asked: Vec<bool>,
    /// Whether all input of the plugin was written (a consumer that exits before is early).
    input_closed: Vec<bool>,
    segments_done: Vec<bool>,
    states_done: bool,
    events_closed: bool,
    /// The first failure.
    failure: Option<Error>,
    /// A reader's error about a producer dsm had already asked to stop (its last line cut
    /// short by the signal, say): reported only when nothing else went wrong, since the reason
    /// for the stop (a consumer that died, a cancel) comes first.
    after_stop: Option<Error>,
    cancelled: Option<RunStatus>,
    cancels_seen: u32,
    timers: Vec<(tokio::time::Instant, Timer)>,
    outcome: Outcome,
}

impl<'s> Supervisor<'s> {
    pub(super) fn new(
        wiring: Wiring,
        options: PipelineOptions,
        sink: &'s mut dyn StateSink,
        started: Instant,
        outcome: Outcome,
    ) -> Self {
        let n = wiring.specs.len();
        Supervisor {
            wiring,
            options,
            sink,
            started,
            exits: vec![None; n],
            asked: vec![false; n],
            input_closed: vec![false; n],
            segments_done: vec![false; n - 1],
            states_done: false,
            events_closed: false,
            failure: None,
            after_stop: None,
            cancelled: None,
            cancels_seen: 0,
            timers: Vec::new(),
            outcome,
        }
    }

    fn last(&self) -> usize {
        self.wiring.specs.len() - 1
    }

    /// Runs until every plugin exited, every segment finished and the loader's output ended
    /// (or the timers gave up on them), then reports how it went.
    pub(super) async fn drive(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut states: mpsc::Receiver<Value>,
        cancel: &CancelToken,
    ) -> Outcome {
        let mut cancel_rx = cancel.subscribe();
        let deadline = self
            .options
            .timeout
            .map(|t| tokio::time::Instant::now() + t);
        // A cancellation that happened before the run started still counts.
        let mut check_cancel_now = true;
        while !self.finished() {
            if check_cancel_now {
                check_cancel_now = false;
                let (reason, count) = *cancel_rx.borrow_and_update();
                if let Some(reason) = reason {
                    self.on_cancel(reason, count);
                }
            }
            let next_timer = self.timers.iter().min_by_key(|(at, _)| *at).copied();
            let timer_sleep = async {
                match next_timer {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let timing = self.cancelled.is_none();
            let timeout_sleep = async {
                match deadline {
                    Some(at) if timing => tokio::time::sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv(), if !self.events_closed => match event {
                    Some(event) => self.on_event(event),
                    None => self.on_events_closed(),
                },
                state = states.recv(), if !self.states_done => match state {
                    Some(state) => {
                        // States that queued up while the last ones were saved are saved
                        // together.
                        let mut batch = vec![state];
                        while let Ok(more) = states.try_recv() {
                            batch.push(more);
                        }
                        self.on_states(batch);
                    }
                    None => self.states_done = true,
                },
                changed = cancel_rx.changed() => check_cancel_now = changed.is_ok(),
                () = timeout_sleep => self.on_timeout(),
                () = timer_sleep => {
                    let (at, timer) = next_timer.expect("a timer fired");
                    self.timers.retain(|(t, _)| *t != at);
                    self.on_timer(timer);
                }
            }
        }
        self.finish().await
    }

    fn finished(&self) -> bool {
        self.exits.iter().all(Option::is_some)
            && self.segments_done.iter().all(|d| *d)
            && self.states_done
    }

    /// Asks the plugins in `range` that still run to stop at `level` (never lowering a request).
    fn stop(&mut self, range: std::ops::Range<usize>, level: StopRequest) {
        for j in range {
            if self.exits[j].is_none() {
                self.asked[j] = true;
                self.wiring.stops[j].send_if_modified(|cur| {
                    if level > *cur {
                        *cur = level;
                        true
                    } else {
                        false
                    }
                });
            }
        }
    }

    fn after(&mut self, wait: std::time::Duration, timer: Timer) {
        self.timers
            .push((tokio::time::Instant::now() + wait, timer));
    }

    /// A SIGINT or SIGTERM (`count` so far): the first stops the extractor and gives the loader
    /// time to flush; another stops every plugin.
    fn on_cancel(&mut self, reason: CancelReason, count: u32) {
        if count <= self.cancels_seen {
            return;
        }
        self.cancels_seen = count;
        let status = match reason {
            CancelReason::Interrupted => RunStatus::Interrupted,
            CancelReason::Terminated => RunStatus::Terminated,
        };
        begin_cancel(
            &mut self.cancelled,
            status,
            count,
            &mut self.timers,
            &self.options,
        );
        let everyone = if count > 1 {
            self.wiring.specs.len()
        } else {
            1
        };
        self.stop(0..everyone, StopRequest::Terminate);
    }

    /// `--timeout` expired: stop the extractor, as a first cancel does.
    fn on_timeout(&mut self) {
        begin_cancel(
            &mut self.cancelled,
            RunStatus::TimedOut,
            1,
            &mut self.timers,
            &self.options,
        );
        self.stop(0..1, StopRequest::Terminate);
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Exited(i, exit) => self.on_exit(i, exit),
            Event::InputClosed(i) => self.input_closed[i] = true,
            Event::InputBroken(i) => self.stop(0..i, StopRequest::Terminate),
            Event::SegmentDone(i, report) => self.on_segment_done(i, report),
        }
    }

    /// Every exit waiter and reader is gone, so all their events were seen: what has not
    /// reported is over.
    fn on_events_closed(&mut self) {
        self.events_closed = true;
        for (i, exit) in self.exits.iter_mut().enumerate() {
            exit.get_or_insert_with(|| PluginExit {
                name: self.wiring.specs[i].name.clone(),
                role: self.wiring.specs[i].role,
                code: None,
                signal: None,
                stopped_by_dsm: true,
            });
        }
        self.segments_done.iter_mut().for_each(|d| *d = true);
    }

    /// Plugin `i` exited. A failure or an early exit of a plugin dsm did not stop is the run's
    /// failure; a dead consumer stops everything upstream of it.
    fn on_exit(&mut self, i: usize, exit: PluginExit) {
        let early = i > 0 && !self.input_closed[i];
        if !self.asked[i] && (!exit.success() || early) {
            let spec = &self.wiring.specs[i];
            let mut message = format!(
                "{} exited with {} after {:.1}s",
                spec.label(),
                exit.describe(),
                self.started.elapsed().as_secs_f64()
            );
            if early {
                message.push_str(" before the end of its input");
            }
            let error = self.wiring.tails[i].add_to(Error::failed(message));
            let error = if i == 0 && self.outcome.states_committed > 0 {
                error.hint("the bookmark advanced only as far as the loader confirmed")
            } else {
                error
            };
            self.failure.get_or_insert(error);
        }
        if i > 0 && (early || !exit.success()) {
            // Nothing downstream of a dead consumer can be delivered.
            self.stop(0..i, StopRequest::Terminate);
        }
        if i < self.last() {
            self.after(self.options.grace, Timer::SegmentEof(i));
        }
        self.exits[i] = Some(exit);
        if self.exits.iter().all(Option::is_some) {
            self.after(self.options.grace, Timer::Final);
        }
    }

    /// Segment `i` (stdout of plugin `i`) ended; its counts go into the outcome.
    fn on_segment_done(&mut self, i: usize, report: segment::SegmentReport) {
        self.segments_done[i] = true;
        if i + 1 == self.segments_done.len() {
            self.outcome.records_sent = report.records_out;
        }
        if i == 0 {
            self.outcome.lines = report.lines;
            self.outcome.streams = report.streams;
            self.outcome.extractor_states = report.states;
        }
        self.outcome.bad_lines += report.bad_lines;
        if let Some(error) = report.error {
            if self.asked[i] && self.failure.is_none() {
                self.after_stop.get_or_insert(error);
            } else {
                self.failure.get_or_insert(error);
            }
            self.stop(0..i + 1, StopRequest::Terminate);
        }
    }

    /// States the loader emitted (it flushed what came before them): hand them to the sink. A
    /// sink that fails stops the extractor and gives the loader time to finish.
    fn on_states(&mut self, mut batch: Vec<Value>) {
        match self.sink.on_states(&batch) {
            Ok(()) => {
                self.outcome.states_committed += batch.len() as u64;
                if let Some(confirmed) = batch
                    .last()
                    .and_then(|s| self.wiring.ledger.confirmed_by(s))
                {
                    self.outcome.records_confirmed = self.outcome.records_confirmed.max(confirmed);
                }
                self.outcome.last_state = batch.pop();
            }
            Err(error) => {
                if self.failure.is_none() {
                    self.failure = Some(error);
                    self.stop(0..1, StopRequest::Terminate);
                    self.after(self.options.drain_timeout, Timer::Drain);
                }
            }
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::SegmentEof(i) => {
                if !self.segments_done[i] {
                    // Killing the group closes the pipe, and the reader passes on everything
                    // before the end.
                    tracing::warn!(plugin = %self.wiring.specs[i].name, "its output stayed open after it exited; stopping its process group");
                    let _ = plugin::sys::signal_group(self.wiring.pids[i], plugin::sys::SIGKILL);
                    self.after(self.options.grace, Timer::SegmentAbort(i));
                }
            }
            Timer::SegmentAbort(i) => {
                if !self.segments_done[i] {
                    // The holder left the group (setsid): stop reading.
                    self.wiring.readers[i].abort();
                    self.segments_done[i] = true;
                }
            }
            Timer::Drain => {
                let n = self.wiring.specs.len();
                self.stop(0..n, StopRequest::Terminate);
            }
            Timer::Final => {
                for r in &self.wiring.readers {
                    r.abort();
                }
                self.wiring.state_task.abort();
                self.segments_done.iter_mut().for_each(|d| *d = true);
                self.states_done = true;
            }
        }
    }

    /// The outcome: status and error from the cancellation or the first failure, the exits,
    /// the loader reader's warnings.
    async fn finish(self) -> Outcome {
        let Supervisor {
            wiring,
            options,
            started,
            exits,
            failure,
            after_stop,
            cancelled,
            mut outcome,
            ..
        } = self;
        // The state reader ends when the loader's stdout closes; its warnings go to the outcome.
        if let Ok(Ok(warnings)) = tokio::time::timeout(options.grace, wiring.state_task).await {
            outcome.warnings.extend(warnings);
        }
        for t in wiring.tasks {
            t.abort();
        }
        outcome.exits = exits.into_iter().flatten().collect();
        let failure = if cancelled.is_none() {
            failure.or(after_stop)
        } else {
            failure
        };
        outcome.status = match (cancelled, &failure) {
            (Some(status), _) => status,
            (None, Some(_)) => RunStatus::Failed,
            (None, None) => RunStatus::Success,
        };
        outcome.error = match (cancelled, failure) {
            (_, Some(error)) => Some(error),
            (Some(status), None) => Some(cancel_error(status, options.timeout)),
            (None, None) => None,
        };
        // An extractor that sent no STATE has no bookmark to advance (a full-table sync).
        if outcome.states_committed == 0 && outcome.extractor_states > 0 {
            let loader = wiring.specs.last().expect("a loader");
            let warning = format!("{} {NO_STATE_WARNING}", loader.label());
            // The caller shows the run's warnings (once, beside its result).
            tracing::debug!("{warning}");
            outcome.warnings.push(warning);
        }
        outcome.duration = started.elapsed();
        outcome
    }
}
