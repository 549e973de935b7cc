//! `depends_on` between flows: checking names, finding cycles, and the order to run in.
//!
//! `depends_on` orders flows that run together. When only some flows run (`dsm sync NAME`),
//! dependencies outside that selection are not pulled in and do not hold the others back;
//! they are still checked, so a typo or a cycle is an error whatever is selected. A name in
//! `depends_on` may be written `KIND:NAME` (`job:daily`) when a schedule and a job share it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use super::OrchestrateError;
use super::flow::Flow;

/// Finds the flow a name means: `NAME`, or `KIND:NAME` (`schedule:daily`, `job:daily`,
/// `extractor:tap-x`) when a schedule, a job or an extractor share the name.
fn resolve(
    all: &[Flow],
    by_name: &HashMap<&str, Vec<usize>>,
    name: &str,
) -> Result<usize, OrchestrateError> {
    let (kind, bare) = match name.split_once(':') {
        Some((kind, bare)) if ["schedule", "job", "extractor"].contains(&kind) => {
            (Some(kind), bare)
        }
        _ => (None, name),
    };
    let matches: Vec<usize> = by_name
        .get(bare)
        .map(|found| {
            found
                .iter()
                .copied()
                .filter(|&i| kind.is_none_or(|k| all[i].kind.as_str() == k))
                .collect()
        })
        .unwrap_or_default();
    match matches[..] {
        [i] => Ok(i),
        [] => Err(OrchestrateError::UnknownFlow {
            name: name.to_string(),
            suggestion: crate::error::did_you_mean(bare, all.iter().map(|f| f.name.as_str()))
                .map(str::to_owned),
        }),
        _ => Err(OrchestrateError::AmbiguousName {
            name: name.to_string(),
            kinds: matches
                .iter()
                .map(|&i| all[i].kind.as_str().to_string())
                .collect(),
        }),
    }
}

/// The flows `names` mean (for `dsm sync NAME...`), in the order of `all`: each name is a
/// schedule, job or extractor name, or `KIND:NAME` when several kinds share it.
pub fn select_by_names<'a>(
    all: &'a [Flow],
    names: &[String],
) -> Result<Vec<&'a Flow>, OrchestrateError> {
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, flow) in all.iter().enumerate() {
        by_name.entry(flow.name.as_str()).or_default().push(i);
    }
    let mut chosen = Vec::new();
    for name in names {
        let i = resolve(all, &by_name, name)?;
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    Ok(chosen.into_iter().map(|i| &all[i]).collect())
}

/// Flows in an order where every flow comes after its dependencies, with the dependency
/// edges the executor needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The flows, dependencies first; among independent flows, the order they were given in.
    pub flows: Vec<Arc<Flow>>,
    /// For each flow (same index as `flows`), the indices of the flows it waits for.
    pub dependencies: Vec<Vec<usize>>,
}

impl Plan {
    /// Checks `depends_on` across `all` flows (unknown names, cycles, duplicate names) and plans
    /// the flows for which `selected` is true.
    pub fn build(all: &[Flow], selected: impl Fn(&Flow) -> bool) -> Result<Plan, OrchestrateError> {
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, flow) in all.iter().enumerate() {
            let same = by_name.entry(flow.name.as_str()).or_default();
            if same.iter().any(|&j| all[j].kind == flow.kind) {
                return Err(OrchestrateError::DuplicateFlow(flow.name.clone()));
            }
            same.push(i);
        }
        let mut edges: Vec<Vec<usize>> = Vec::with_capacity(all.len());
        for flow in all {
            let mut deps = Vec::new();
            for dep in &flow.depends_on {
                let d = resolve(all, &by_name, dep).map_err(|e| match e {
                    OrchestrateError::UnknownFlow { name, suggestion } => {
                        OrchestrateError::UnknownDependency {
                            flow: flow.name.clone(),
                            dependency: name,
                            suggestion,
                        }
                    }
                    other => other,
                })?;
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
            edges.push(deps);
        }
        if let Some(cycle) = find_cycle(&edges) {
            return Err(OrchestrateError::Cycle {
                cycle: cycle.into_iter().map(|i| all[i].name.clone()).collect(),
            });
        }

        // Kahn's algorithm over the selected flows, taking the earliest-given ready flow first
        // so the order is stable and follows the project file.
        let chosen: Vec<usize> = (0..all.len()).filter(|&i| selected(&all[i])).collect();
        let is_chosen = |i: usize| chosen.binary_search(&i).is_ok();
        let mut waiting: HashMap<usize, usize> = HashMap::new();
        let mut dependants: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for &i in &chosen {
            let deps: Vec<usize> = edges[i].iter().copied().filter(|&d| is_chosen(d)).collect();
            for &d in &deps {
                dependants.entry(d).or_default().push(i);
            }
            if deps.is_empty() {
                ready.push(Reverse(i));
            } else {
                waiting.insert(i, deps.len());
            }
        }
        let mut order = Vec::with_capacity(chosen.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &dependant in dependants.get(&i).map(Vec::as_slice).unwrap_or_default() {
                let left = waiting.get_mut(&dependant).expect("every dependant waits");
                *left -= 1;
                if *left == 0 {
                    ready.push(Reverse(dependant));
                }
            }
        }
        debug_assert_eq!(
            order.len(),
            chosen.len(),
            "no cycles, so every flow is ordered"
        );
        let position: HashMap<usize, usize> =
            order.iter().enumerate().map(|(pos, &i)| (i, pos)).collect();
        let dependencies = order
            .iter()
            .map(|&i| {
                edges[i]
                    .iter()
                    .filter_map(|d| position.get(d).copied())
                    .collect()
            })
            .collect();
        Ok(Plan {
            flows: order.iter().map(|&i| Arc::new(all[i].clone())).collect(),
            dependencies,
        })
    }

    /// What `dsm sync --dry-run` prints: one line per flow in run order, with what it runs and
    /// what it waits for: `2. report (job: tap-a target-b) after load-users`.
    pub fn describe(&self) -> Vec<String> {
        self.flows
            .iter()
            .zip(&self.dependencies)
            .enumerate()
            .map(|(i, (flow, deps))| {
                let mut line = format!(
                    "{}. {} ({}: {})",
                    i + 1,
                    flow.name,
                    flow.kind.as_str(),
                    flow.blocks
                );
                if !deps.is_empty() {
                    let names: Vec<&str> =
                        deps.iter().map(|&d| self.flows[d].name.as_str()).collect();
                    line.push_str(&format!(" after {}", names.join(", ")));
                }
                line
            })
            .collect()
    }

    /// The flow names in run order (for `--dry-run`).
    pub fn names(&self) -> Vec<&str> {
        self.flows.iter().map(|f| f.name.as_str()).collect()
    }
}

/// A cycle in the dependency edges, as node indices with the first repeated at the end.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative depth-first search; `path` holds (node, next edge to follow).
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&dep) = edges[node].get(*next) {
                *next += 1;
                match marks[dep] {
                    Mark::New => {
                        marks[dep] = Mark::OnPath;
                        path.push((dep, 0));
                    }
                    Mark::OnPath => {
                        let from = path.iter().position(|(n, _)| *n == dep).expect("on path");
                        let mut cycle: Vec<usize> = path[from..].iter().map(|(n, _)| *n).collect();
                        cycle.push(dep);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrate::flow::{Blocks, FlowKind};

    fn flow(name: &str, deps: &[&str]) -> Flow {
        let mut f = Flow::new(
            name,
            FlowKind::Job,
            Blocks::Tasks(vec![format!("tap-{name} target-x")]),
        );
        f.depends_on = deps.iter().map(|d| d.to_string()).collect();
        f
    }

    #[test]
    fn plan_puts_dependencies_first_and_keeps_file_order_otherwise() {
        let flows = [
            flow("c", &["b"]),
            flow("a", &[]),
            flow("b", &["a"]),
            flow("d", &[]),
        ];
        let plan = Plan::build(&flows, |_| true).unwrap();
        assert_eq!(plan.names(), ["a", "b", "c", "d"]);
        assert_eq!(plan.dependencies, vec![vec![], vec![0], vec![1], vec![]]);
    }

    #[test]
    fn dry_run_lines_show_blocks_and_dependencies() {
        let mut pair = Flow::new(
            "users",
            FlowKind::Schedule,
            Blocks::Pair {
                extractor: "tap-csv".into(),
                loader: "target-jsonl".into(),
            },
        );
        pair.state_id = Some("users".into());
        let flows = [flow("report", &["users"]), pair];
        assert_eq!(
            Plan::build(&flows, |_| true).unwrap().describe(),
            [
                "1. users (schedule: tap-csv → target-jsonl)",
                "2. report (job: tap-report target-x) after users"
            ]
        );
    }

    #[test]
    fn cycle_is_named_from_start_to_start() {
        let flows = [
            flow("a", &["b"]),
            flow("b", &["c"]),
            flow("c", &["a"]),
            flow("d", &[]),
        ];
        let err = Plan::build(&flows, |_| true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flows depend on each other in a cycle: a → b → c → a"
        );
        let self_loop = [flow("solo", &["solo"])];
        assert_eq!(
            Plan::build(&self_loop, |_| true).unwrap_err(),
            OrchestrateError::Cycle {
                cycle: vec!["solo".into(), "solo".into()]
            }
        );
    }

    #[test]
    fn unknown_dependency_suggests_the_closest_name() {
        let flows = [flow("github-daily", &[]), flow("report", &["github-dayly"])];
        let err = Plan::build(&flows, |_| true).unwrap_err();
        assert_eq!(
            err,
            OrchestrateError::UnknownDependency {
                flow: "report".into(),
                dependency: "github-dayly".into(),
                suggestion: Some("github-daily".into()),
            }
        );
        let rendered: crate::error::Error = err.into();
        assert_eq!(rendered.hints(), ["did you mean `github-daily`?"]);
    }

    #[test]
    fn unselected_dependencies_are_checked_but_not_planned() {
        let flows = [flow("a", &[]), flow("b", &["a"]), flow("x", &["nope"])];
        assert!(Plan::build(&flows, |f| f.name == "b").is_err());
        let flows = [flow("a", &[]), flow("b", &["a"])];
        let plan = Plan::build(&flows, |f| f.name == "b").unwrap();
        assert_eq!(plan.names(), ["b"]);
        assert_eq!(plan.dependencies, vec![Vec::<usize>::new()]);
    }

    #[test]
    fn names_shared_by_kinds_need_a_kind_prefix() {
        let mut schedule = flow("daily", &[]);
        schedule.kind = FlowKind::Schedule;
        let flows = [
            schedule,
            flow("daily", &[]),
            flow("report", &["job:daily"]),
            flow("other", &[]),
        ];
        let plan = Plan::build(&flows, |_| true).unwrap();
        assert_eq!(
            plan.dependencies[plan.names().iter().position(|n| *n == "report").unwrap()],
            vec![1]
        );
        assert_eq!(plan.flows[1].kind, FlowKind::Job);

        let err = select_by_names(&flows, &["daily".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`daily` names more than one flow: a schedule, a job"
        );
        let picked = select_by_names(
            &flows,
            &["schedule:daily".into(), "other".into(), "other".into()],
        )
        .unwrap();
        let picked: Vec<(&str, FlowKind)> =
            picked.iter().map(|f| (f.name.as_str(), f.kind)).collect();
        assert_eq!(
            picked,
            [("daily", FlowKind::Schedule), ("other", FlowKind::Job)]
        );
        let err = select_by_names(&flows, &["reprot".to_string()]).unwrap_err();
        assert_eq!(
            err,
            OrchestrateError::UnknownFlow {
                name: "reprot".into(),
                suggestion: Some("report".into())
            }
        );

        let ambiguous = [flows[0].clone(), flows[1].clone(), flow("x", &["daily"])];
        assert!(matches!(
            Plan::build(&ambiguous, |_| true),
            Err(OrchestrateError::AmbiguousName { .. })
        ));
    }

    #[test]
    fn duplicate_names_are_an_error() {
        let flows = [flow("a", &[]), flow("a", &[])];
        assert_eq!(
            Plan::build(&flows, |_| true).unwrap_err(),
            OrchestrateError::DuplicateFlow("a".into())
        );
    }
}
