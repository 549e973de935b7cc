//! Runs a [`Plan`]: independent flows concurrently up to a limit, dependants after all their
//! dependencies succeeded, skips after a failure, and retries with backoff and timeouts.
//!
//! The engine plugs in as a closure `run_flow(flow, attempt)` returning a future of
//! [`FlowResult`]; the wait between attempts is a closure too, so tests do not wait. When an
//! attempt times out its future is dropped, so the engine must stop its plugins on drop
//! (`kill_on_drop`).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::flow::Flow;
use super::graph::Plan;
use super::summary::{AttemptReport, FlowNotes, FlowReport, FlowStatus, RecordCounts, Summary};

/// What one attempt of a flow did, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowResult {
    /// Whether the attempt succeeded.
    pub succeeded: bool,
    /// Records read from the extractor (as `counts.read`).
    pub records: u64,
    /// Records read, sent to the loader and confirmed by it.
    pub counts: RecordCounts,
    /// What went wrong, when it failed.
    pub error: Option<String>,
    /// More about the failure, for people: the plugin's last stderr lines and where its log is.
    pub details: Vec<String>,
    /// It did not start because another process runs the same flow (its lock is held): not
    /// retried, and not a failure.
    pub already_running: bool,
    /// Where the data went and why records were sent again, for people.
    pub notes: FlowNotes,
}

impl FlowResult {
    /// A successful attempt that moved `records` records.
    pub fn success(records: u64) -> FlowResult {
        FlowResult {
            succeeded: true,
            records,
            counts: RecordCounts::all(records),
            error: None,
            details: Vec::new(),
            already_running: false,
            notes: FlowNotes::default(),
        }
    }

    /// A failed attempt.
    pub fn failure(error: impl Into<String>) -> FlowResult {
        FlowResult {
            succeeded: false,
            records: 0,
            counts: RecordCounts::default(),
            error: Some(error.into()),
            details: Vec::new(),
            already_running: false,
            notes: FlowNotes::default(),
        }
    }

    /// A failed attempt, with the lines that explain it (stderr tail, log file).
    pub fn failure_with_details(error: impl Into<String>, details: Vec<String>) -> FlowResult {
        FlowResult {
            details,
            ..FlowResult::failure(error)
        }
    }

    /// An attempt that did not start because another process holds the flow's lock.
    pub fn already_running(message: impl Into<String>) -> FlowResult {
        FlowResult {
            already_running: true,
            ..FlowResult::failure(message)
        }
    }
}

/// The outcome of one attempt, for callers that record attempts as they happen.
pub type AttemptOutcome = AttemptReport;

/// Runs every flow of `plan`, at most `parallel` at a time (at least 1), and reports each, in
/// plan order.
///
/// A flow starts once all its dependencies in the plan succeeded; when one fails (after its
/// retries) or is skipped, its dependants are skipped, transitively. Among ready flows the
/// earlier one in the plan starts first. Each flow gets `retries + 1` attempts at most, with
/// `sleep(backoff)` between them; an attempt longer than the flow's `timeout` is stopped and
/// counts as `timed_out`. The flow's status is its last attempt's.
pub async fn execute<R, RF, S, SF>(plan: &Plan, parallel: usize, run_flow: R, sleep: S) -> Summary
where
    R: Fn(Arc<Flow>, u32) -> RF + Send + Sync + 'static,
    RF: Future<Output = FlowResult> + Send + 'static,
    S: Fn(Duration) -> SF + Send + Sync + 'static,
    SF: Future<Output = ()> + Send + 'static,
{
    let parallel = parallel.max(1);
    let run_flow = Arc::new(run_flow);
    let sleep = Arc::new(sleep);
    let count = plan.flows.len();

    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut waiting_on: Vec<usize> = vec![0; count];
    for (i, deps) in plan.dependencies.iter().enumerate() {
        waiting_on[i] = deps.len();
        for &d in deps {
            dependants[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..count).filter(|&i| waiting_on[i] == 0).collect();
    let mut finished = vec![false; count];
    let mut reports: Vec<Option<FlowReport>> = vec![None; count];
    let mut tasks = JoinSet::new();
    let mut task_flow: HashMap<tokio::task::Id, usize> = HashMap::new();

    loop {
        while tasks.len() < parallel {
            let Some(i) = ready.pop_first() else { break };
            let flow = Arc::clone(&plan.flows[i]);
            if let Some(reason) = &flow.paused {
                // Not started at all: an operator took one of its sources out of syncs.
                finished[i] = true;
                reports[i] = Some(FlowReport {
                    name: flow.name.clone(),
                    kind: flow.kind,
                    status: FlowStatus::Paused,
                    records: 0,
                    counts: RecordCounts::default(),
                    duration: Duration::ZERO,
                    attempts: Vec::new(),
                    error: None,
                    details: Vec::new(),
                    skipped_because: None,
                    paused_reason: Some(reason.clone()),
                    notes: FlowNotes::default(),
                });
                skip_dependants(plan, &dependants, i, &mut finished, &mut reports);
                continue;
            }
            let handle = tasks.spawn(attempts(flow, Arc::clone(&run_flow), Arc::clone(&sleep)));
            task_flow.insert(handle.id(), i);
        }
        let Some(joined) = tasks.join_next_with_id().await else {
            break;
        };
        let (i, report) = match joined {
            Ok((id, report)) => (task_flow[&id], report),
            Err(error) => {
                let i = task_flow[&error.id()];
                let flow = &plan.flows[i];
                let report = FlowReport {
                    name: flow.name.clone(),
                    kind: flow.kind,
                    status: FlowStatus::Failed,
                    records: 0,
                    counts: RecordCounts::default(),
                    duration: Duration::ZERO,
                    attempts: Vec::new(),
                    error: Some(format!("the flow's task stopped unexpectedly: {error}")),
                    details: Vec::new(),
                    skipped_because: None,
                    paused_reason: None,
                    notes: FlowNotes::default(),
                };
                (i, report)
            }
        };
        finished[i] = true;
        let succeeded = report.status == FlowStatus::Succeeded;
        reports[i] = Some(report);
        if succeeded {
            for &d in &dependants[i] {
                waiting_on[d] -= 1;
                if waiting_on[d] == 0 && !finished[d] {
                    ready.insert(d);
                }
            }
        } else {
            skip_dependants(plan, &dependants, i, &mut finished, &mut reports);
        }
    }
    Summary {
        flows: reports.into_iter().flatten().collect(),
    }
}

/// Marks everything downstream of `failed` as skipped (or paused, when `failed` was paused),
/// each naming the dependency that held it back.
fn skip_dependants(
    plan: &Plan,
    dependants: &[Vec<usize>],
    failed: usize,
    finished: &mut [bool],
    reports: &mut [Option<FlowReport>],
) {
    let status = match reports[failed].as_ref().map(|r| r.status) {
        Some(FlowStatus::Paused) => FlowStatus::Paused,
        Some(FlowStatus::AlreadyRunning | FlowStatus::Waiting) => FlowStatus::Waiting,
        _ => FlowStatus::Skipped,
    };
    let mut stack = vec![failed];
    while let Some(cause) = stack.pop() {
        for &d in &dependants[cause] {
            if finished[d] {
                continue;
            }
            finished[d] = true;
            let flow = &plan.flows[d];
            reports[d] = Some(FlowReport {
                name: flow.name.clone(),
                kind: flow.kind,
                status,
                records: 0,
                counts: RecordCounts::default(),
                duration: Duration::ZERO,
                attempts: Vec::new(),
                error: None,
                details: Vec::new(),
                skipped_because: Some(plan.flows[cause].name.clone()),
                paused_reason: None,
                notes: FlowNotes::default(),
            });
            stack.push(d);
        }
    }
}

/// Runs one flow's attempts until one succeeds or the retries are used up.
async fn attempts<R, RF, S, SF>(flow: Arc<Flow>, run_flow: Arc<R>, sleep: Arc<S>) -> FlowReport
where
    R: Fn(Arc<Flow>, u32) -> RF,
    RF: Future<Output = FlowResult>,
    S: Fn(Duration) -> SF,
    SF: Future<Output = ()>,
{
    let started = Instant::now();
    let mut reports: Vec<AttemptReport> = Vec::new();
    for number in 1..=flow.retry.max_attempts() {
        if number > 1 {
            sleep(flow.retry.backoff.delay_before(number)).await;
        }
        let attempt_started = Instant::now();
        let running = run_flow(Arc::clone(&flow), number);
        let result = match flow.timeout {
            Some(limit) => tokio::time::timeout(limit, running).await.ok(),
            None => Some(running.await),
        };
        let report = match result {
            Some(result) => AttemptReport {
                number,
                status: if result.succeeded {
                    FlowStatus::Succeeded
                } else if result.already_running {
                    FlowStatus::AlreadyRunning
                } else {
                    FlowStatus::Failed
                },
                records: result.records,
                counts: result.counts,
                duration: attempt_started.elapsed(),
                error: result.error,
                details: result.details,
                notes: result.notes,
            },
            None => AttemptReport {
                number,
                status: FlowStatus::TimedOut,
                records: 0,
                counts: RecordCounts::default(),
                duration: attempt_started.elapsed(),
                error: Some(format!(
                    "stopped after its timeout of {:?}",
                    flow.timeout.unwrap_or_default()
                )),
                details: Vec::new(),
                notes: FlowNotes::default(),
            },
        };
        tracing::debug!(flow = %flow.name, attempt = number, status = ?report.status, "flow attempt ended");
        // Another process running the flow is not a reason to try again.
        let done = matches!(
            report.status,
            FlowStatus::Succeeded | FlowStatus::AlreadyRunning
        );
        reports.push(report);
        if done {
            break;
        }
    }
    let last = reports.last().expect("a flow makes at least one attempt");
    FlowReport {
        name: flow.name.clone(),
        kind: flow.kind,
        status: last.status,
        records: reports.iter().map(|a| a.records).sum(),
        counts: reports
            .iter()
            .fold(RecordCounts::default(), |all, a| all.plus(a.counts)),
        duration: started.elapsed(),
        error: last.error.clone(),
        details: last.details.clone(),
        notes: last.notes.clone(),
        attempts: reports,
        skipped_because: None,
        paused_reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrate::flow::{Blocks, FlowKind};
    use crate::orchestrate::retry::{RetryBackoff, RetryPolicy};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn flow(name: &str, deps: &[&str]) -> Flow {
        let mut f = Flow::new(
            name,
            FlowKind::Job,
            Blocks::Tasks(vec![format!("tap-{name} target-jsonl")]),
        );
        f.depends_on = deps.iter().map(|d| d.to_string()).collect();
        f
    }

    fn no_wait(_: Duration) -> std::future::Ready<()> {
        std::future::ready(())
    }

    /// Runs `flows` where the flows named in `failing` fail, and returns the summary and the start order.
    async fn run(
        flows: &[Flow],
        parallel: usize,
        failing: &'static [&'static str],
    ) -> (Summary, Vec<String>) {
        let plan = Plan::build(flows, |_| true).unwrap();
        let started = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&started);
        let summary = execute(
            &plan,
            parallel,
            move |flow: Arc<Flow>, _attempt| {
                log.lock().unwrap().push(flow.name.clone());
                async move {
                    tokio::task::yield_now().await;
                    if failing.contains(&flow.name.as_str()) {
                        FlowResult::failure(format!("`{}` failed", flow.name))
                    } else {
                        FlowResult::success(10)
                    }
                }
            },
            no_wait,
        )
        .await;
        let order = started.lock().unwrap().clone();
        (summary, order)
    }

    fn statuses(summary: &Summary) -> Vec<(String, FlowStatus)> {
        let mut s: Vec<_> = summary
            .flows
            .iter()
            .map(|f| (f.name.clone(), f.status))
            .collect();
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s
    }

    #[tokio::test]
    async fn dependants_start_after_their_dependencies() {
        let flows = [
            flow("report", &["extract", "users"]),
            flow("extract", &[]),
            flow("users", &[]),
        ];
        let (summary, order) = run(&flows, 1, &[]).await;
        assert_eq!(order, ["extract", "users", "report"]);
        assert_eq!(summary.exit_code(), 0);
        assert_eq!(summary.flows.iter().map(|f| f.records).sum::<u64>(), 30);
    }

    #[tokio::test]
    async fn three_flows_with_a_dependency_and_a_failure() {
        // `b` fails, so `c` (which needs it) is skipped; `a` is independent and still runs.
        let flows = [
            flow("a", &[]),
            flow("b", &[]),
            flow("c", &["b"]),
            flow("d", &["c"]),
        ];
        let (summary, order) = run(&flows, 2, &["b"]).await;
        assert!(
            !order.contains(&"c".to_string()) && !order.contains(&"d".to_string()),
            "{order:?}"
        );
        assert_eq!(
            statuses(&summary),
            [
                ("a".into(), FlowStatus::Succeeded),
                ("b".into(), FlowStatus::Failed),
                ("c".into(), FlowStatus::Skipped),
                ("d".into(), FlowStatus::Skipped),
            ]
        );
        let in_plan_order: Vec<&str> = summary.flows.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(in_plan_order, ["a", "b", "c", "d"]);
        let d = summary.flows.iter().find(|f| f.name == "d").unwrap();
        assert_eq!(d.skipped_because.as_deref(), Some("c"));
        assert_eq!(summary.exit_code(), 1);
    }

    #[tokio::test]
    async fn a_flow_running_elsewhere_is_not_retried_and_not_a_failure() {
        let mut f = flow("busy", &[]);
        f.retry = RetryPolicy {
            retries: 3,
            ..RetryPolicy::default()
        };
        let plan = Plan::build(&[f, flow("after", &["busy"])], |_| true).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let summary = execute(
            &plan,
            1,
            move |_flow: Arc<Flow>, _attempt| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { FlowResult::already_running("flow `busy` is already running (pid 7)") }
            },
            no_wait,
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no retries");
        assert_eq!(summary.flows[0].status, FlowStatus::AlreadyRunning);
        assert_eq!(summary.flows[0].attempts.len(), 1);
        // Its dependants wait for the other process's run: not started, not failed.
        assert_eq!(summary.flows[1].status, FlowStatus::Waiting);
        assert_eq!(summary.flows[1].skipped_because.as_deref(), Some("busy"));
        assert!(summary.flows[1].attempts.is_empty());
        assert_eq!(summary.exit_code(), 0);
        assert_eq!(
            summary.exit_code_with(crate::orchestrate::Overlap::Exit3),
            3
        );
    }

    #[tokio::test]
    async fn a_paused_flow_does_not_start_and_pauses_its_dependants() {
        let mut held = flow("held", &[]);
        held.paused = Some("source `tap-held` is inactive".into());
        let flows = [held, flow("after", &["held"]), flow("other", &[])];
        let (summary, order) = run(&flows, 1, &[]).await;
        assert_eq!(order, ["other"]);
        assert_eq!(
            statuses(&summary),
            [
                ("after".into(), FlowStatus::Paused),
                ("held".into(), FlowStatus::Paused),
                ("other".into(), FlowStatus::Succeeded),
            ]
        );
        let held = summary.flows.iter().find(|f| f.name == "held").unwrap();
        assert_eq!(
            held.paused_reason.as_deref(),
            Some("source `tap-held` is inactive")
        );
        assert!(held.attempts.is_empty());
        let after = summary.flows.iter().find(|f| f.name == "after").unwrap();
        assert_eq!(after.skipped_because.as_deref(), Some("held"));
        assert_eq!(summary.exit_code(), 0);
    }

    #[tokio::test]
    async fn a_flow_with_two_dependencies_is_skipped_when_either_fails() {
        let flows = [
            flow("slow", &[]),
            flow("bad", &[]),
            flow("both", &["slow", "bad"]),
        ];
        let (summary, order) = run(&flows, 2, &["bad"]).await;
        assert_eq!(order.len(), 2);
        assert_eq!(statuses(&summary)[0], ("bad".into(), FlowStatus::Failed));
        assert_eq!(statuses(&summary)[1], ("both".into(), FlowStatus::Skipped));
    }

    #[tokio::test]
    async fn concurrency_stays_within_the_limit_and_reaches_it() {
        let flows: Vec<Flow> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|n| flow(n, &[]))
            .collect();
        let plan = Plan::build(&flows, |_| true).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        // Each flow waits at a barrier for a partner: this only finishes if two run at once.
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (r, m, b) = (
            Arc::clone(&running),
            Arc::clone(&most),
            Arc::clone(&barrier),
        );
        let summary = tokio::time::timeout(
            Duration::from_secs(30),
            execute(
                &plan,
                2,
                move |_flow: Arc<Flow>, _attempt| {
                    let (r, m, b) = (Arc::clone(&r), Arc::clone(&m), Arc::clone(&b));
                    async move {
                        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        b.wait().await;
                        tokio::task::yield_now().await;
                        r.fetch_sub(1, Ordering::SeqCst);
                        FlowResult::success(1)
                    }
                },
                no_wait,
            ),
        )
        .await
        .expect("two flows ran at the same time");
        assert_eq!(summary.flows.len(), 6);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn retries_wait_with_backoff_and_the_last_attempt_decides() {
        let mut f = flow("flaky", &[]);
        f.retry = RetryPolicy {
            retries: 4,
            backoff: RetryBackoff {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(12),
                multiplier: 2.0,
            },
        };
        let plan = Plan::build(&[f], |_| true).unwrap();
        let waits = Arc::new(Mutex::new(Vec::new()));
        let w = Arc::clone(&waits);
        let summary = execute(
            &plan,
            1,
            |_flow: Arc<Flow>, attempt| async move {
                if attempt < 3 {
                    FlowResult::failure(format!("attempt {attempt} failed"))
                } else {
                    FlowResult::success(7)
                }
            },
            move |d| {
                w.lock().unwrap().push(d);
                std::future::ready(())
            },
        )
        .await;
        assert_eq!(
            *waits.lock().unwrap(),
            [Duration::from_secs(5), Duration::from_secs(10)]
        );
        let report = &summary.flows[0];
        assert_eq!(report.status, FlowStatus::Succeeded);
        let attempts: Vec<(u32, FlowStatus)> = report
            .attempts
            .iter()
            .map(|a| (a.number, a.status))
            .collect();
        assert_eq!(
            attempts,
            [
                (1, FlowStatus::Failed),
                (2, FlowStatus::Failed),
                (3, FlowStatus::Succeeded)
            ]
        );
        assert_eq!(report.error, None);
    }

    #[tokio::test]
    async fn a_flow_that_keeps_failing_ends_failed_after_its_retries() {
        let mut f = flow("broken", &[]);
        f.retry.retries = 2;
        let plan = Plan::build(&[f], |_| true).unwrap();
        let summary = execute(
            &plan,
            1,
            |_f: Arc<Flow>, n| async move { FlowResult::failure(format!("boom {n}")) },
            no_wait,
        )
        .await;
        let report = &summary.flows[0];
        assert_eq!(report.attempts.len(), 3);
        assert_eq!(report.status, FlowStatus::Failed);
        assert_eq!(report.error.as_deref(), Some("boom 3"));
    }

    #[tokio::test]
    async fn an_attempt_past_its_timeout_is_stopped_and_retried() {
        let mut f = flow("slow", &[]);
        f.timeout = Some(Duration::from_millis(20));
        f.retry.retries = 1;
        let plan = Plan::build(&[f], |_| true).unwrap();
        let summary = execute(
            &plan,
            1,
            |_f: Arc<Flow>, attempt| async move {
                if attempt == 1 {
                    std::future::pending::<()>().await;
                }
                FlowResult::success(3)
            },
            no_wait,
        )
        .await;
        let report = &summary.flows[0];
        let attempts: Vec<FlowStatus> = report.attempts.iter().map(|a| a.status).collect();
        assert_eq!(attempts, [FlowStatus::TimedOut, FlowStatus::Succeeded]);
        assert_eq!(report.status, FlowStatus::Succeeded);

        let mut g = flow("hangs", &[]);
        g.timeout = Some(Duration::from_millis(20));
        let plan = Plan::build(&[g, flow("after", &["hangs"])], |_| true).unwrap();
        let summary = execute(
            &plan,
            1,
            |_f: Arc<Flow>, _| async { std::future::pending::<FlowResult>().await },
            no_wait,
        )
        .await;
        assert_eq!(
            statuses(&summary),
            [
                ("after".into(), FlowStatus::Skipped),
                ("hangs".into(), FlowStatus::TimedOut)
            ]
        );
    }

    #[tokio::test]
    async fn a_panicking_flow_counts_as_failed() {
        let plan = Plan::build(&[flow("p", &[]), flow("q", &["p"])], |_| true).unwrap();
        let summary = execute(
            &plan,
            1,
            |_f: Arc<Flow>, _| async {
                if true {
                    panic!("engine bug");
                }
                FlowResult::success(0)
            },
            no_wait,
        )
        .await;
        assert_eq!(
            statuses(&summary),
            [
                ("p".into(), FlowStatus::Failed),
                ("q".into(), FlowStatus::Skipped)
            ]
        );
    }
}
